//! What a client sends, applied to the session: audio frames (with their limits) and sori's
//! own commands (`start`, `audio`, `flush`, `keepalive`, `stop`). Every problem is an `error`
//! event saying what was wrong and what is accepted; the session goes on.

use super::{Driver, Ending};
use crate::protocol::{ClientMessage, ServerMessage, close_code, decode_base64_audio};
use crate::session::resolve_options;

/// Messages a session may send that cannot be understood before it is ended: a client
/// that speaks the protocol sends none, one with a bug a few.
pub const MAX_INVALID_MESSAGES: u32 = 100;

/// The driver's answer to one client message.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Events to send now (errors, a new `ready`); often none.
    Send(Vec<ServerMessage>),
    /// The client asked to stop: the driver is closing.
    Stop,
}

impl Driver {
    /// Applies one of sori's client messages. Once the session is closing, only `stop` means
    /// anything (it already stopped); the rest is ignored, without an error for each.
    pub fn apply(&mut self, message: ClientMessage) -> Reply {
        if !self.is_live() {
            return match message {
                ClientMessage::Stop => Reply::Stop,
                _ => Reply::Send(Vec::new()),
            };
        }
        let events = match message {
            ClientMessage::Audio { audio } => self.push_base64(&audio),
            ClientMessage::Start(requested) => {
                let current = self.options().clone();
                let result = resolve_options(&current, &requested, self.config.max_prompt_chars)
                    .map_err(|e| ServerMessage::error(e.code, e.to_string(), false))
                    .and_then(|options| {
                        self.stream
                            .session
                            .reconfigure(options)
                            .map_err(|e| ServerMessage::error(e.code(), e.to_string(), false))
                    });
                match result {
                    Ok(()) => vec![self.ready()],
                    Err(error) => vec![error],
                }
            }
            ClientMessage::Flush => {
                self.flush();
                Vec::new()
            }
            ClientMessage::Keepalive => Vec::new(),
            ClientMessage::Stop => {
                self.close(Ending::stopped());
                return Reply::Stop;
            }
        };
        Reply::Send(self.errors_counted(events))
    }

    /// Feeds raw PCM in the session's format. Too big, empty or malformed frames, and frames
    /// arriving while too much audio waits for a decoder, are refused with an `error` event.
    /// Audio after `stop` (a client still sending while the last finals drain) is ignored.
    pub fn push_audio(&mut self, bytes: &[u8]) -> Vec<ServerMessage> {
        if !self.is_live() {
            return Vec::new();
        }
        let refusal = self.check_frame(bytes.len()).err().or_else(|| {
            self.stream
                .session
                .push_pcm(bytes)
                .err()
                .map(|e| ServerMessage::error(e.code(), e.to_string(), false))
        });
        self.errors_counted(refusal.into_iter().collect())
    }

    /// A client message that could not be parsed: its `error` event, counted. Past
    /// [`MAX_INVALID_MESSAGES`] in one session the client is not speaking the protocol (or is
    /// flooding the server with replies it may never read): the session ends with a fatal
    /// `too_many_invalid_messages` and close 1008.
    pub fn refuse(&mut self, error: ServerMessage) -> Vec<ServerMessage> {
        self.invalid_messages = self.invalid_messages.saturating_add(1);
        if self.invalid_messages <= MAX_INVALID_MESSAGES {
            return self.errors_counted(vec![error]);
        }
        if !self.is_live() {
            return Vec::new();
        }
        self.close(Ending::Graceful {
            code: close_code::POLICY,
            reason: "too many invalid messages",
        });
        self.errors_counted(vec![ServerMessage::error(
            "too_many_invalid_messages",
            format!(
                "more than {MAX_INVALID_MESSAGES} messages of this session could not be understood; \
                 the session ends (see docs/protocol.md for the messages accepted)"
            ),
            true,
        )])
    }

    fn push_base64(&mut self, audio: &str) -> Vec<ServerMessage> {
        let decoded_len = audio.len() / 4 * 3;
        if decoded_len > self.config.max_frame_bytes {
            return vec![too_big(decoded_len, self.config.max_frame_bytes)];
        }
        match decode_base64_audio(audio) {
            Ok(bytes) => self.push_audio(&bytes),
            Err(e) => vec![ServerMessage::error(e.code(), e.to_string(), false)],
        }
    }

    fn check_frame(&self, len: usize) -> Result<(), ServerMessage> {
        let max_frame = self.config.max_frame_bytes;
        if len > max_frame {
            return Err(too_big(len, max_frame));
        }
        // Memory stays bounded when a client sends faster than the server decodes: audio is
        // refused (with a reason) rather than queued without end. Finals already queued are kept.
        let backlog = self.stream.session.backlog_seconds();
        let limit = self.config.max_backlog_s;
        if backlog > limit {
            return Err(ServerMessage::error(
                "backlog_full",
                format!(
                    "{backlog:.0} s of audio are waiting to be decoded (limit {limit:.0} s); this frame was dropped: send audio in real time, not faster"
                ),
                false,
            ));
        }
        if len == 0 {
            return Err(ServerMessage::error(
                "empty_frame",
                "audio frame has no bytes; send raw PCM in the session's encoding",
                false,
            ));
        }
        Ok(())
    }

    /// Counts the `error` events among a reply in the session's summary.
    fn errors_counted(&mut self, events: Vec<ServerMessage>) -> Vec<ServerMessage> {
        let errors = events
            .iter()
            .filter(|m| matches!(m, ServerMessage::Error { .. }))
            .count();
        self.stream.session.summary_mut().errors += errors as u64;
        events
    }
}

fn too_big(len: usize, max_frame: usize) -> ServerMessage {
    ServerMessage::error(
        "frame_too_large",
        format!(
            "audio frame of {len} bytes is larger than the limit of {max_frame} bytes; send smaller frames (20–100 ms each)"
        ),
        false,
    )
}

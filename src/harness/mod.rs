//! What drives a real sori from the outside, shared by the tests and the offline tools
//! (`sori eval`, `sori bench`): a server started in this process on 127.0.0.1:0
//! ([`LocalServer`]) and a `/ws` client ([`ws_client`]). Nothing in the server uses it.

pub mod local_server;
pub mod ws_client;

pub use local_server::{Decoders, LocalServer, LocalServerError};
pub use ws_client::{Incoming, Ws, WsClientError};

use super::*;

fn filter() -> HallucinationFilter {
    HallucinationFilter::new(&FilterConfig::default()).unwrap()
}

fn speech(text: &str) -> Candidate<'_> {
    Candidate {
        text,
        avg_logprob: -0.3,
        no_speech_prob: 0.05,
        audio_rms: 0.08,
        duration_s: 3.0,
    }
}

fn verdict(f: &HallucinationFilter, text: &str) -> Result<String, DropReason> {
    f.apply(&speech(text)).map(|t| t.into_owned())
}

const JFK: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";

#[test]
fn builtin_list_is_large_and_valid() {
    let f = filter();
    assert!(f.pattern_count() >= 37, "{} patterns", f.pattern_count());
    // Spacing variants collapse into one pattern.
    let lines = BUILTIN_PATTERNS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    assert!(f.pattern_count() < lines);
}

#[test]
fn normalisation_is_korean_aware() {
    assert_eq!(
        normalize("시청해 주셔서, 감사합니다…!"),
        "시청해주셔서감사합니다"
    );
    assert_eq!(normalize("ＭＢＣ　뉴스。"), "mbc뉴스");
    assert_eq!(normalize("Thanks for WATCHING!!"), "thanksforwatching");
    assert_eq!(
        normalize("ご視聴ありがとうございました。"),
        "ご視聴ありがとうございました"
    );
    assert_eq!(normalize("♪ ... ♪"), "");
}

#[test]
fn korean_youtube_outros_are_dropped() {
    let f = filter();
    for t in [
        "시청해주셔서 감사합니다.",
        "시청해 주셔서 감사합니다!",
        "  시청해주셔서   감사합니다…  ",
        "끝까지 시청해주셔서 감사합니다",
        "구독과 좋아요 부탁드립니다",
        "구독, 좋아요, 알림설정 부탁드립니다.",
        "다음 영상에서 만나요~",
        "네. 시청해주셔서 감사합니다",
    ] {
        assert!(
            matches!(verdict(&f, t), Err(DropReason::Pattern(_))),
            "{t}: {:?}",
            verdict(&f, t)
        );
    }
}

#[test]
fn broadcast_and_subtitle_credits_are_dropped() {
    let f = filter();
    for t in [
        "MBC 뉴스 이덕영입니다.",
        "MBC 뉴스 김성현 기자입니다",
        "KBS 뉴스",
        "SBS 뉴스 홍길동입니다",
        "이 시각 세계였습니다.",
        "자막 제공",
        "한글자막 by 한효정",
    ] {
        let v = verdict(&f, t);
        assert!(matches!(v, Err(DropReason::Pattern(_))), "{t}: {v:?}");
    }
}

#[test]
fn english_japanese_chinese_outros_are_dropped() {
    let f = filter();
    for t in [
        "Thank you for watching!",
        "Thanks for watching.",
        "THANK YOU SO MUCH FOR WATCHING",
        "Please subscribe to my channel.",
        "Don't forget to like and subscribe!",
        "Subtitles by the Amara.org community",
        "ご視聴ありがとうございました",
        "チャンネル登録よろしくお願いします！",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "字幕由Amara.org社区提供",
        "谢谢观看。",
    ] {
        let v = verdict(&f, t);
        assert!(matches!(v, Err(DropReason::Pattern(_))), "{t}: {v:?}");
    }
    let Err(DropReason::Pattern(p)) = verdict(&f, "Thanks for watching!") else {
        panic!()
    };
    assert_eq!(p, "Thanks for watching");
}

#[test]
fn real_sentences_are_kept() {
    let f = filter();
    for t in [
        "오늘 회의에 참석해 주셔서 감사합니다 다음 안건은 예산입니다",
        "감사합니다.",
        "네 감사합니다",
        "Thank you.",
        "Thank you, that's all for today's meeting.",
        "MBC 뉴스에서 보도한 사고 현장은 지금 통제 중입니다",
        "Thanks for watching the east gate camera while I was out.",
        "자막 제공 기능을 켜 주시고 회의를 시작하겠습니다",
        "강남대로 양방향 정체가 심합니다",
        "1000000원 입금 확인했습니다",
        JFK,
    ] {
        assert_eq!(verdict(&f, t).as_deref(), Ok(t), "{t}");
    }
}

#[test]
fn empty_and_annotations_are_dropped() {
    let f = filter();
    for t in [
        "",
        "   ",
        "...",
        "…",
        "[Music]",
        "(박수)",
        "♪♪",
        "♪ ~ ♪",
        "[음악] (웃음)",
        "*applause*",
        "（笑）",
        "【音楽】",
        "-",
    ] {
        assert_eq!(verdict(&f, t), Err(DropReason::Empty), "{t:?}");
    }
    // An annotation next to speech keeps the speech, without the annotation.
    assert!(f.check(&speech("(웃음) 네 맞습니다")).is_ok());
    assert_eq!(verdict(&f, "(웃음) 네 맞습니다").unwrap(), "네 맞습니다");
    assert_eq!(
        verdict(&f, "What your country can do for you. (buzzer) (buzzer)").unwrap(),
        "What your country can do for you."
    );
}

#[test]
fn whisper_score_rules() {
    let f = filter();
    let base = speech("오늘 날씨가 좋습니다");
    assert!(f.check(&base).is_ok());
    let c = Candidate {
        no_speech_prob: 0.9,
        avg_logprob: -1.2,
        ..base
    };
    assert_eq!(f.check(&c), Err(DropReason::NoSpeech));
    // High no-speech probability alone is not enough (openai-whisper semantics).
    let c = Candidate {
        no_speech_prob: 0.9,
        avg_logprob: -0.2,
        ..base
    };
    assert!(f.check(&c).is_ok());
    let c = Candidate {
        avg_logprob: -2.5,
        ..base
    };
    assert_eq!(f.check(&c), Err(DropReason::LowLogprob));
    let c = Candidate {
        audio_rms: 0.001,
        ..base
    };
    assert_eq!(f.check(&c), Err(DropReason::Silence));
    // Unknown scores skip their rules.
    let c = Candidate::text_only("오늘 날씨가 좋습니다");
    assert!(f.check(&c).is_ok());
}

#[test]
fn english_loops_are_cut_or_dropped() {
    let f = filter();
    assert_eq!(
        verdict(&f, "I think the the the the the the the problem is here"),
        Ok("I think the problem is here".into())
    );
    assert_eq!(
        f.strip_repetition("We should go home. We should go home. We should go home. We should go home. We should go home. We should go"),
        Some("We should go home.".into())
    );
    assert_eq!(
        verdict(&f, "the the the the the the the the"),
        Err(DropReason::Repetition)
    );
    // Four in a row is still speech ("no no no no").
    assert_eq!(f.strip_repetition("no no no no, stop"), None);
    assert!(f.check(&speech("the the the the the the")).is_err());
}

/// Whisper sometimes writes a short window's sentence twice (seen on a 4.3 s LibriVox part:
/// "… for them. He was not an ill-sposed young man. He was not an ill-sposed young man.").
/// A phrase of five words or more said twice in a row is cut to once; shorter repeats are
/// speech.
#[test]
fn a_long_phrase_written_twice_is_cut_to_once() {
    let f = filter();
    assert_eq!(
        verdict(
            &f,
            "power to do for them. He was not an ill-sposed young man. He was not an ill-sposed young man."
        ),
        Ok("power to do for them. He was not an ill-sposed young man.".into())
    );
    assert_eq!(
        verdict(
            &f,
            "제 이름은 김민수 입니다 반갑습니다 제 이름은 김민수 입니다 반갑습니다"
        ),
        Ok("제 이름은 김민수 입니다 반갑습니다".into())
    );
    assert_eq!(
        f.strip_repetition("thank you very much, thank you very much"),
        None
    );
    assert_eq!(f.strip_repetition("I said go now. I said go now."), None);
}

#[test]
fn korean_loops_are_cut_or_dropped() {
    let f = filter();
    assert_eq!(
        verdict(
            &f,
            "차량 정체가 계속되고 있습니다 감사합니다 감사합니다 감사합니다 감사합니다 감사합니다 감사합니다"
        ),
        Ok("차량 정체가 계속되고 있습니다 감사합니다".into())
    );
    assert_eq!(
        f.strip_repetition(
            "사고 현장입니다. 감사합니다감사합니다감사합니다감사합니다감사합니다감사합니다"
        ),
        Some("사고 현장입니다. 감사합니다".into())
    );
    assert_eq!(
        verdict(&f, "네 네 네 네 네 네 네"),
        Err(DropReason::Repetition)
    );
    assert_eq!(verdict(&f, "네네네네네네네네"), Err(DropReason::Repetition));
    // Phrase loop with punctuation differences still counts.
    assert_eq!(
        f.strip_repetition(
            "좌회전 하세요. 좌회전 하세요, 좌회전 하세요 좌회전 하세요. 좌회전 하세요!"
        ),
        Some("좌회전 하세요.".into())
    );
    assert_eq!(f.strip_repetition("네 네 네 알겠습니다"), None);
    // Numbers are not loops.
    assert_eq!(f.strip_repetition("금액은 1000000원 입니다"), None);
    // Chinese unspaced loop.
    assert_eq!(
        f.strip_repetition("谢谢谢谢谢谢谢谢谢谢谢谢"),
        Some("谢".into())
    );
}

#[test]
fn compression_ratio_matches_python_zlib() {
    // (text, len(zlib.compress(text.encode()))) from CPython 3.11's zlib, level 6.
    let cases: [(&str, usize); 8] = [
        (JFK, 79),
        (
            "오늘 회의에 참석해 주셔서 감사합니다 다음 안건은 예산입니다",
            89,
        ),
        (&"감사합니다. ".repeat(10), 30),
        (
            "the the the the the the the the the the the the the the the the",
            15,
        ),
        (&"I'm going to go to the store. ".repeat(6), 38),
        ("시청해주셔서 감사합니다.", 46),
        ("Thank you.", 18),
        (
            "서울 강남구 테헤란로 일대 교통 정체가 심합니다. 우회 도로를 이용해 주시기 바랍니다. 현재 사고 처리 중입니다.",
            137,
        ),
    ];
    for (text, zlen) in cases {
        let want = text.len() as f32 / zlen as f32;
        let got = compression_ratio(text);
        assert!(
            (got - want).abs() / want < 0.05,
            "{text:?}: {got} vs zlib {want}"
        );
    }
    assert_eq!(compression_ratio(""), 0.0);
    assert!(compression_ratio(JFK) < 2.4);
    assert!(compression_ratio(&"I'm going to go to the store. ".repeat(6)) > 2.4);
}

#[test]
fn compression_rule_catches_loops_that_are_not_consecutive() {
    let f = filter();
    // Repeats with variations: no exact run of 5 and no phrase twice in a row, but it
    // compresses like a loop.
    let t = "그래서 우리는 그래서 우리는 다시 하나 그래서 우리는 그래서 우리는 다시 둘 그래서 우리는 그래서 우리는 다시 셋 그래서 우리는 그래서 우리는 다시 넷 그래서 우리는 그래서 우리는 다시 다섯";
    assert_eq!(f.strip_repetition(t), None);
    assert_eq!(f.check(&speech(t)), Err(DropReason::CompressionRatio));
}

#[test]
fn user_file_adds_patterns() {
    let dir = std::env::temp_dir().join(format!("sori-filter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("extra.txt");
    std::fs::write(
        &path,
        "# site-specific\n\n교통정보센터 안내 방송입니다\nACME * Radio\n",
    )
    .unwrap();
    let cfg = FilterConfig {
        extra_patterns_file: Some(path.clone()),
        ..FilterConfig::default()
    };
    let f = HallucinationFilter::new(&cfg).unwrap();
    assert_eq!(f.pattern_count(), filter().pattern_count() + 2);
    assert_eq!(
        verdict(&f, "교통정보센터 안내방송입니다."),
        Err(DropReason::Pattern("교통정보센터 안내 방송입니다".into()))
    );
    assert!(matches!(
        verdict(&f, "ACME FM Radio!"),
        Err(DropReason::Pattern(_))
    ));
    assert!(verdict(&filter(), "교통정보센터 안내방송입니다.").is_ok());

    std::fs::write(&path, "ok line\n* bad\n").unwrap();
    let e = HallucinationFilter::new(&cfg).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    std::fs::write(&path, "!!!\n").unwrap();
    assert!(HallucinationFilter::new(&cfg).is_err());
    std::fs::remove_dir_all(&dir).unwrap();

    let e = HallucinationFilter::new(&cfg).unwrap_err();
    assert!(matches!(e, FilterError::Io { .. }), "{e}");
    assert!(e.to_string().contains("extra.txt"), "{e}");
}

#[test]
fn config_is_validated() {
    let bad = FilterConfig {
        no_speech_threshold: 1.5,
        ..FilterConfig::default()
    };
    let e = HallucinationFilter::new(&bad).unwrap_err();
    assert!(e.to_string().contains("no_speech_threshold"), "{e}");
    let bad = FilterConfig {
        max_repeats: 0,
        ..FilterConfig::default()
    };
    assert!(HallucinationFilter::new(&bad).is_err());
}

#[test]
fn filter_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<HallucinationFilter>();
}

#[test]
fn labels_are_stable() {
    let all = [
        DropReason::Empty,
        DropReason::Pattern("x".into()),
        DropReason::NoSpeech,
        DropReason::LowLogprob,
        DropReason::CompressionRatio,
        DropReason::Repetition,
        DropReason::Silence,
    ];
    let labels: Vec<&str> = all.iter().map(DropReason::as_str).collect();
    assert_eq!(labels, DropReason::LABELS);
    assert!(
        DropReason::Pattern("Thanks for watching".into())
            .to_string()
            .contains("Thanks for watching")
    );
}

//! Properties of name keys: the key is idempotent, and the hub refuses any second name with the
//! same key as (or a look-alike of) a name in use.

use chat_core::hub::{ConnId, Hub, HubConfig, Input, Output};
use chat_core::names;
use chat_core::protocol::ClientMsg;
use proptest::prelude::*;

/// Letters with tricky case behaviour, compatibility forms and look-alikes.
fn tricky() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a",
        "A",
        "ａ",
        "Ａ",
        "а",
        "s",
        "S",
        "ſ",
        "σ",
        "ς",
        "Σ",
        "ß",
        "ẞ",
        "ss",
        "SS",
        "i",
        "I",
        "İ",
        "ı",
        "k",
        "K",
        "\u{212a}",
        "e\u{301}",
        "é",
        "É",
        "ﬁ",
        "fi",
        "ǅ",
        "Ǆ",
        "ǆ",
        "1",
        "l",
        "ΐ",
        "\u{3b9}\u{308}\u{301}",
        "ῼ",
        "ῳ",
        "Ω",
        "ω",
        "\u{2126}",
        "_",
        "-",
    ]);
    prop::collection::vec(pieces, 1..6).prop_map(|v| v.concat())
}

fn register(hub: &mut Hub, conn: u64, name: &str) -> bool {
    let conn = ConnId(conn);
    hub.handle(
        0,
        Input::Connect {
            conn,
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
            wire: Default::default(),
        },
    );
    hub.handle(
        0,
        Input::Frame {
            conn,
            frame: Ok(ClientMsg::Hello {
                version: 1,
                name: name.into(),
                password: None,
            }),
        },
    );
    let mut welcomed = false;
    while let Some(out) = hub.poll_output() {
        if let Output::Transmit { to, bytes } = out
            && to == vec![conn]
            && bytes.starts_with(b"{\"type\":\"welcome\"")
        {
            welcomed = true;
        }
    }
    welcomed
}

proptest! {
    #[test]
    fn the_key_is_idempotent(s in "\\PC{0,12}") {
        let k = names::key(&s);
        prop_assert_eq!(names::key(&k), k);
    }

    #[test]
    fn the_key_of_tricky_names_is_idempotent(s in tricky()) {
        let k = names::key(&s);
        prop_assert_eq!(names::key(&k), k.clone());
        prop_assert_eq!(names::skeleton(&k), names::skeleton(&s));
    }

    #[test]
    fn a_name_with_the_key_of_one_in_use_is_refused(a in tricky(), b in tricky()) {
        let mut hub = Hub::new(HubConfig::default());
        prop_assume!(register(&mut hub, 1, &a));
        let same_key = names::normalize_name(&b)
            .is_ok_and(|b| names::key(&b) == names::key(&names::normalize_name(&a).unwrap()));
        let look_alike = names::skeleton(&a) == names::skeleton(&b);
        let second = register(&mut hub, 2, &b);
        if same_key || look_alike {
            prop_assert!(!second, "{a:?} then {b:?} were both accepted");
        }
        prop_assert_eq!(hub.user_count(), 1 + usize::from(second));
    }
}

//! Demo bots: clients on chat-core's session that chat, act, wander between rooms and come and
//! go, so a demo room feels alive.

use std::time::Duration;

use chat_core::client::{self, TcpConnector};
use chat_core::{Session, SessionConfig};
use tokio::sync::watch;

/// Names the bots take, in order.
pub const NAMES: &[&str] = &[
    "ada", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances", "alan", "radia",
];

const LINES: &[&str] = &[
    "morning everyone",
    "anyone tried the new build yet?",
    "the deploy went fine, by the way",
    "coffee break ☕ back in five",
    "lunch in 10?",
    "reviewing the pull request now",
    "tests are green on main 🎉",
    "does anyone know why the staging box is slow?",
    "I think it's DNS. It's always DNS.",
    "pairing on the parser this afternoon if anyone wants to join",
    "docs updated",
    "that's a great idea",
    "+1",
    "can we move standup to 10:15?",
    "found the bug: off by one, of course",
    "weekend plans, anyone?",
    "the benchmark numbers look good",
    "I'll write that up in the wiki",
    "brb",
    "ça marche, merci !",
    "日本語のドキュメントも更新しました ✅",
    "שלום לכולם, גרסה 2.1 יצאה",
    "see https://example.org/release-notes",
];

const ACTIONS: &[&str] = &[
    "waves",
    "grabs a coffee",
    "nods",
    "is deep in a code review",
    "high-fives everyone",
];

/// A tiny deterministic generator (xorshift64*), enough for believable timing.
pub struct Rng(u64);

impl Rng {
    /// Seeded; the same seed gives the same bot behaviour.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Runs one bot until `stop` turns true.
pub async fn run(addr: String, name: &'static str, seed: u64, mut stop: watch::Receiver<bool>) {
    let mut rng = Rng::new(seed);
    // Stagger arrivals.
    if sleep_or_stop(Duration::from_millis(300 + rng.below(1500)), &mut stop).await {
        return;
    }
    loop {
        let (handle, task) = client::spawn(
            TcpConnector::new(addr.clone()),
            Session::new(SessionConfig::default(), name),
            |_| {},
        );
        let mut in_random = false;
        // Chat for a while, then leave and come back later.
        let stay = 10 + rng.below(30);
        for _ in 0..stay {
            let pause = Duration::from_millis(2000 + rng.below(6000));
            if sleep_or_stop(pause, &mut stop).await {
                handle.submit("/quit demo over");
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
                return;
            }
            if !handle.with_session(|s| s.is_online()) {
                continue;
            }
            let roll = rng.below(100);
            let line = match roll {
                0..=64 => rng.pick(LINES).to_string(),
                65..=74 => format!("/me {}", rng.pick(ACTIONS)),
                75..=84 => {
                    let others: Vec<String> = handle.with_session(|s| {
                        s.active()
                            .map(|c| c.members.clone())
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|m| Some(m.as_str()) != s.name())
                            .collect()
                    });
                    match others.get(rng.below(others.len().max(1) as u64) as usize) {
                        Some(who) => format!("{who}: {}", rng.pick(LINES)),
                        None => rng.pick(LINES).to_string(),
                    }
                }
                85..=92 if !in_random => {
                    in_random = true;
                    "/join #random".to_string()
                }
                85..=92 => {
                    in_random = false;
                    "/part #random back to work".to_string()
                }
                _ => "/switch #lobby".to_string(),
            };
            handle.submit(line);
        }
        handle.submit("/quit see you later");
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        let away = Duration::from_millis(3000 + rng.below(8000));
        if sleep_or_stop(away, &mut stop).await {
            return;
        }
    }
}

/// Sleeps, returning true early if `stop` turned true.
async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

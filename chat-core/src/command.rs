//! What a user types: slash commands and plain text, parsed once for every front-end.

use crate::protocol::{Role, Secret};

/// One parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Plain text for the active room or conversation.
    Say(String),
    /// `/me waves`.
    Me(String),
    /// `/reply text`: a reply to the newest message from someone else here.
    Reply(String),
    /// `/react 👍`: a reaction to the newest message from someone else here.
    React(String),
    /// `/join #room [key]`.
    Join {
        /// The room.
        room: String,
        /// Its key, when it has one.
        key: Option<Secret>,
    },
    /// `/part [#room] [reason]`.
    Part {
        /// The room; the active one when absent.
        room: Option<String>,
        /// Parting words.
        reason: Option<String>,
    },
    /// `/msg bob hello`: a direct message.
    Msg {
        /// Recipient.
        to: String,
        /// Text.
        text: String,
    },
    /// `/query bob`: open a direct conversation without sending anything.
    Query(String),
    /// `/nick newname`.
    Nick(String),
    /// `/who [#room]`.
    Who(Option<String>),
    /// `/whois name`: who someone connected is.
    Whois(String),
    /// `/rooms`.
    Rooms,
    /// `/topic [new topic]`.
    Topic(Option<String>),
    /// `/history [count]`: fetch older messages of the active room.
    History(u32),
    /// `/switch #room` or `/switch 2`: make another room active.
    Switch(String),
    /// `/close`: close the active direct conversation, or part the active room.
    Close,
    /// `/quit [reason]`.
    Quit(Option<String>),
    /// `/away [reason]`: away with a reason, back without one.
    Away(Option<String>),
    /// `/highlights`: the latest lines that mentioned you, from every conversation.
    Highlights,
    /// `/search words`: messages of the active room with all these words, newest first.
    Search(String),
    /// `/help`.
    Help,
    /// `/register password`: register the current name as an account.
    Register(Secret),
    /// `/login account password`.
    Login {
        /// The account.
        account: String,
        /// Its password.
        password: Secret,
    },
    /// `/logout`.
    Logout,
    /// `/passwd old new`.
    Passwd {
        /// The current password.
        old: Secret,
        /// The new one.
        new: Secret,
    },
    /// `/unregister password`: delete the account.
    Unregister(Secret),
    /// `/kick name [reason]` in the active room.
    Kick {
        /// Who.
        name: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/ban target [duration] [reason]` or `/mute ...` in the active room.
    Ban {
        /// What the ban matches (see the protocol's `ban`).
        target: String,
        /// Seconds until it lifts itself.
        duration: Option<u64>,
        /// Why.
        reason: Option<String>,
        /// A mute rather than a ban.
        mute: bool,
    },
    /// `/unban target` or `/unmute target` in the active room.
    Unban {
        /// The target, as `/bans` lists it.
        target: String,
        /// Lift a mute.
        mute: bool,
    },
    /// `/bans`: the active room's bans and mutes.
    Bans,
    /// `/op name`, `/deop`, `/voice`, `/devoice`, `/role name role`.
    Role {
        /// The account.
        name: String,
        /// Its new role.
        role: Role,
    },
    /// `/mode [+mitR-k ...] [key]`: show or change the active room's modes.
    Mode(ModeChange),
    /// `/invite name [duration]` to the active room.
    Invite {
        /// Who.
        name: String,
        /// Seconds until it lapses.
        duration: Option<u64>,
    },
    /// `/kill name [reason]` (server operators).
    Kill {
        /// Who.
        name: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/gban target [duration] [reason]` (server operators).
    ServerBan {
        /// What the ban matches.
        target: String,
        /// Seconds until it lifts itself.
        duration: Option<u64>,
        /// Why.
        reason: Option<String>,
    },
    /// `/gunban target` (server operators).
    ServerUnban(String),
    /// `/gbans` (server operators).
    ServerBans,
    /// `/closeroom #room [reason]` (server operators).
    CloseRoom {
        /// The room.
        room: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/openroom #room` (server operators).
    OpenRoom(String),
    /// `/connections` (server operators).
    Connections,
}

/// Changes to a room's modes, as `/mode` parses them; all absent asks for the modes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModeChange {
    /// `m`: only voiced members speak.
    pub moderated: Option<bool>,
    /// `i`: invite-only.
    pub invite_only: Option<bool>,
    /// `t`: only operators set the topic.
    pub topic_lock: Option<bool>,
    /// `R`: only accounts join.
    pub registered_only: Option<bool>,
    /// `s`: secret, only members see the room.
    pub secret: Option<bool>,
    /// `k`: the key (empty to remove it).
    pub key: Option<Secret>,
    /// `l`: at most this many people (0 to lift the limit).
    pub limit: Option<u32>,
    /// `-n`: open, outsiders may send to it (`+n`, the default: only members).
    pub open: Option<bool>,
}

impl ModeChange {
    /// True when nothing changes: a query.
    pub fn is_query(&self) -> bool {
        *self == Self::default()
    }
}

/// Parses `30s`, `10m`, `2h`, `7d` or `1w` into seconds.
pub fn parse_duration(word: &str) -> Option<u64> {
    let unit = word.chars().last()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    let digits = &word[..word.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// `target [duration] [reason]`: the words of `/ban`, `/mute` and `/gban`.
fn ban_args(args: &str) -> Option<(String, Option<u64>, Option<String>)> {
    let (target, rest) = match args.split_once(char::is_whitespace) {
        Some((t, rest)) => (t, rest.trim()),
        None => (args, ""),
    };
    if target.is_empty() {
        return None;
    }
    let (duration, reason) = match rest.split_once(char::is_whitespace) {
        Some((first, more)) => match parse_duration(first) {
            Some(d) => (Some(d), more.trim()),
            None => (None, rest),
        },
        None => match parse_duration(rest) {
            Some(d) => (Some(d), ""),
            None => (None, rest),
        },
    };
    let reason = (!reason.is_empty()).then(|| reason.to_string());
    Some((target.to_string(), duration, reason))
}

/// `name [reason]`.
fn name_and_reason(args: &str) -> Option<(String, Option<String>)> {
    let (name, reason) = match args.split_once(char::is_whitespace) {
        Some((n, r)) => (n, r.trim()),
        None => (args, ""),
    };
    if name.is_empty() {
        return None;
    }
    Some((
        name.to_string(),
        (!reason.is_empty()).then(|| reason.to_string()),
    ))
}

/// `+mi-t`, `+k key`, `-k`: the words of `/mode`.
fn mode_args(args: &str) -> Option<ModeChange> {
    let mut change = ModeChange::default();
    let mut words = args.split_whitespace();
    let mut params = Vec::new();
    let mut flags = Vec::new();
    for word in words.by_ref() {
        if word.starts_with(['+', '-']) {
            flags.push(word);
        } else {
            params.push(word);
        }
    }
    let mut params = params.into_iter();
    for word in flags {
        let mut on = true;
        for c in word.chars() {
            match c {
                '+' => on = true,
                '-' => on = false,
                'm' => change.moderated = Some(on),
                'i' => change.invite_only = Some(on),
                't' => change.topic_lock = Some(on),
                'R' => change.registered_only = Some(on),
                's' => change.secret = Some(on),
                'n' => change.open = Some(!on),
                'k' if on => change.key = Some(Secret::new(params.next()?)),
                'k' => change.key = Some(Secret::new("")),
                'l' if on => change.limit = Some(params.next()?.parse().ok().filter(|n| *n > 0)?),
                'l' => change.limit = Some(0),
                _ => return None,
            }
        }
    }
    params.next().is_none().then_some(change)
}

/// Every command with its usage and a one-line description, for `/help` and completion.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("/join", "/join #room", "join a room (created if new)"),
    (
        "/part",
        "/part [#room] [reason]",
        "leave a room (the active one by default)",
    ),
    ("/msg", "/msg name text", "send a direct message"),
    ("/query", "/query name", "open a direct conversation"),
    ("/me", "/me action", "describe an action"),
    (
        "/reply",
        "/reply text",
        "reply to the newest message from someone else",
    ),
    (
        "/react",
        "/react emoji",
        "react to the newest message from someone else",
    ),
    ("/nick", "/nick name", "change your name"),
    ("/who", "/who [#room]", "list the members of a room"),
    (
        "/whois",
        "/whois name",
        "someone's account, rooms, away and idle time",
    ),
    ("/rooms", "/rooms", "list the rooms on the server"),
    ("/topic", "/topic [text]", "show or set the room's topic"),
    (
        "/history",
        "/history [n]",
        "fetch n older messages of this room",
    ),
    (
        "/switch",
        "/switch #room|n",
        "switch to a room by name or number",
    ),
    ("/close", "/close", "close a conversation or leave the room"),
    ("/quit", "/quit [reason]", "leave the server"),
    (
        "/away",
        "/away [reason]",
        "mark yourself away; without a reason, back",
    ),
    (
        "/search",
        "/search words",
        "find messages of this room with all the words",
    ),
    (
        "/highlights",
        "/highlights",
        "the latest lines that mentioned you, everywhere",
    ),
    (
        "/register",
        "/register password",
        "register your name as an account",
    ),
    ("/login", "/login account password", "log in to an account"),
    ("/logout", "/logout", "log out (and disconnect)"),
    (
        "/passwd",
        "/passwd old new",
        "change your account's password",
    ),
    ("/unregister", "/unregister password", "delete your account"),
    (
        "/kick",
        "/kick name [reason]",
        "remove someone from this room (operators)",
    ),
    (
        "/ban",
        "/ban name|account:A|name:PATTERN|addr:IP [30m|2h|7d] [reason]",
        "ban from this room (operators)",
    ),
    ("/unban", "/unban target", "lift a ban (operators)"),
    (
        "/mute",
        "/mute name|target [30m|2h|7d] [reason]",
        "let someone read but not speak here (operators)",
    ),
    ("/unmute", "/unmute target", "lift a mute (operators)"),
    ("/bans", "/bans", "list this room's bans and mutes"),
    ("/op", "/op account", "make an account an operator here"),
    ("/deop", "/deop account", "take operator away"),
    (
        "/voice",
        "/voice account",
        "let an account speak when moderated",
    ),
    ("/devoice", "/devoice account", "take voice away"),
    (
        "/role",
        "/role account owner|op|voice|member",
        "give a role in this room",
    ),
    (
        "/mode",
        "/mode [+m|+i|+t|+R|+s|-n|+k key|-k ...]",
        "show or set modes: moderated, invite-only, topic lock, accounts only, secret, open, key",
    ),
    (
        "/invite",
        "/invite name [duration]",
        "invite someone to this room (operators)",
    ),
    (
        "/kill",
        "/kill name [reason]",
        "disconnect someone (server operators)",
    ),
    (
        "/gban",
        "/gban target [duration] [reason]",
        "ban from the server (server operators)",
    ),
    (
        "/gunban",
        "/gunban target",
        "lift a server ban (server operators)",
    ),
    ("/gbans", "/gbans", "list server bans (server operators)"),
    (
        "/closeroom",
        "/closeroom #room [reason]",
        "close a room (server operators)",
    ),
    (
        "/openroom",
        "/openroom #room",
        "open a closed room (server operators)",
    ),
    (
        "/connections",
        "/connections",
        "list connections (server operators)",
    ),
    ("/help", "/help", "show this list"),
];

/// Why an input line is not a valid command; the text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A command that does not exist.
    #[error("unknown command {0}; /help lists the commands")]
    Unknown(String),
    /// A command missing an argument or with a bad one.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// Nothing to send.
    #[error("nothing to send")]
    Empty,
}

/// True when the line carries a password (`/register`, `/login`, `/identify`, `/passwd`,
/// `/unregister`, or `/msg NickServ IDENTIFY ...`): front-ends keep it out of the input history
/// (Up recalls it) and out of any history file.
pub fn holds_secret(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('/') else {
        return false;
    };
    let mut words = rest.split_whitespace();
    let command = words.next().unwrap_or("").to_lowercase();
    match command.as_str() {
        "register" | "login" | "identify" | "passwd" | "password" | "unregister" => true,
        "msg" | "query" | "m" => words
            .next()
            .is_some_and(|to| to.eq_ignore_ascii_case("nickserv")),
        _ => false,
    }
}

/// Parses one line typed by the user. A line starting with `//` sends the text after the first
/// slash as a plain message, so a message can start with a slash.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Err(CommandError::Empty);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Command::Say(format!("/{escaped}")));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Command::Say(line.to_string()));
    };
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let arg = || (!args.is_empty()).then(|| args.to_string());
    let usage = |cmd: &str| {
        let usage = COMMANDS
            .iter()
            .find(|(n, _, _)| *n == cmd)
            .map_or("/help", |(_, u, _)| *u);
        CommandError::Usage(usage)
    };
    let cmd = match name.to_lowercase().as_str() {
        "me" | "action" => Command::Me(arg().ok_or_else(|| usage("/me"))?),
        "reply" | "re" => Command::Reply(arg().ok_or_else(|| usage("/reply"))?),
        "react" => {
            let emoji = arg().filter(|a| !a.contains(char::is_whitespace));
            Command::React(emoji.ok_or_else(|| usage("/react"))?)
        }
        "join" | "j" => {
            let mut words = args.split_whitespace();
            let room = words.next().ok_or_else(|| usage("/join"))?;
            let room = if room.starts_with('#') {
                room.to_string()
            } else {
                format!("#{room}")
            };
            Command::Join {
                room,
                key: words.next().map(Secret::new),
            }
        }
        "part" | "leave" => {
            let (room, reason) = match args.split_once(char::is_whitespace) {
                _ if args.is_empty() => (None, None),
                Some((room, reason)) if room.starts_with('#') => {
                    (Some(room.to_string()), Some(reason.trim().to_string()))
                }
                None if args.starts_with('#') => (Some(args.to_string()), None),
                _ => (None, Some(args.to_string())),
            };
            Command::Part {
                room,
                reason: reason.filter(|r| !r.is_empty()),
            }
        }
        "msg" | "m" | "tell" => {
            let (to, text) = args
                .split_once(char::is_whitespace)
                .ok_or_else(|| usage("/msg"))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(usage("/msg"));
            }
            Command::Msg {
                to: to.to_string(),
                text: text.to_string(),
            }
        }
        "query" | "q" => Command::Query(
            args.split_whitespace()
                .next()
                .ok_or_else(|| usage("/query"))?
                .to_string(),
        ),
        "nick" | "name" => Command::Nick(
            args.split_whitespace()
                .next()
                .ok_or_else(|| usage("/nick"))?
                .to_string(),
        ),
        "who" | "names" | "members" => Command::Who(arg()),
        "whois" | "wi" => Command::Whois(
            args.split_whitespace()
                .next()
                .ok_or_else(|| usage("/whois"))?
                .to_string(),
        ),
        "rooms" | "list" => Command::Rooms,
        "topic" => Command::Topic(arg()),
        "history" => Command::History(match args {
            "" => 50,
            n => n.parse().map_err(|_| usage("/history"))?,
        }),
        "switch" | "win" | "w" | "buffer" => {
            Command::Switch(arg().ok_or_else(|| usage("/switch"))?)
        }
        "close" => Command::Close,
        "quit" | "exit" | "bye" => Command::Quit(arg()),
        "away" => Command::Away(arg()),
        "back" => Command::Away(None),
        "highlights" | "mentions" => Command::Highlights,
        "search" | "grep" => match arg() {
            Some(words) => Command::Search(words),
            None => return Err(usage("/search")),
        },
        "help" | "?" => Command::Help,
        "register" => Command::Register(Secret::new(
            args.split_whitespace()
                .next()
                .ok_or_else(|| usage("/register"))?,
        )),
        "login" | "identify" => {
            let mut words = args.split_whitespace();
            match (words.next(), words.next()) {
                (Some(account), Some(password)) => Command::Login {
                    account: account.to_string(),
                    password: Secret::new(password),
                },
                _ => return Err(usage("/login")),
            }
        }
        "logout" => Command::Logout,
        "passwd" | "password" => {
            let mut words = args.split_whitespace();
            match (words.next(), words.next()) {
                (Some(old), Some(new)) => Command::Passwd {
                    old: Secret::new(old),
                    new: Secret::new(new),
                },
                _ => return Err(usage("/passwd")),
            }
        }
        "unregister" => Command::Unregister(Secret::new(
            args.split_whitespace()
                .next()
                .ok_or_else(|| usage("/unregister"))?,
        )),
        "kick" | "k" => {
            let (name, reason) = name_and_reason(args).ok_or_else(|| usage("/kick"))?;
            Command::Kick { name, reason }
        }
        "ban" | "mute" => {
            let mute = name.eq_ignore_ascii_case("mute");
            let (target, duration, reason) =
                ban_args(args).ok_or_else(|| usage(if mute { "/mute" } else { "/ban" }))?;
            Command::Ban {
                target,
                duration,
                reason,
                mute,
            }
        }
        "unban" | "unmute" => {
            let mute = name.eq_ignore_ascii_case("unmute");
            let target = args
                .split_whitespace()
                .next()
                .ok_or_else(|| usage(if mute { "/unmute" } else { "/unban" }))?;
            Command::Unban {
                target: target.to_string(),
                mute,
            }
        }
        "bans" | "banlist" => Command::Bans,
        "op" | "deop" | "voice" | "devoice" => {
            let lower = name.to_lowercase();
            let role = match lower.as_str() {
                "op" => Role::Op,
                "voice" => Role::Voice,
                _ => Role::Member,
            };
            let who = args
                .split_whitespace()
                .next()
                .ok_or_else(|| usage(&format!("/{lower}")))?;
            Command::Role {
                name: who.to_string(),
                role,
            }
        }
        "role" => {
            let mut words = args.split_whitespace();
            let (Some(who), Some(role)) = (words.next(), words.next()) else {
                return Err(usage("/role"));
            };
            let role = match role.to_lowercase().as_str() {
                "owner" => Role::Owner,
                "op" | "operator" => Role::Op,
                "voice" | "voiced" => Role::Voice,
                "member" | "none" => Role::Member,
                _ => return Err(usage("/role")),
            };
            Command::Role {
                name: who.to_string(),
                role,
            }
        }
        "mode" => Command::Mode(mode_args(args).ok_or_else(|| usage("/mode"))?),
        "invite" => {
            let mut words = args.split_whitespace();
            let who = words.next().ok_or_else(|| usage("/invite"))?;
            let duration = match words.next() {
                Some(d) => Some(parse_duration(d).ok_or_else(|| usage("/invite"))?),
                None => None,
            };
            Command::Invite {
                name: who.to_string(),
                duration,
            }
        }
        "kill" => {
            let (name, reason) = name_and_reason(args).ok_or_else(|| usage("/kill"))?;
            Command::Kill { name, reason }
        }
        "gban" => {
            let (target, duration, reason) = ban_args(args).ok_or_else(|| usage("/gban"))?;
            Command::ServerBan {
                target,
                duration,
                reason,
            }
        }
        "gunban" => Command::ServerUnban(
            args.split_whitespace()
                .next()
                .ok_or_else(|| usage("/gunban"))?
                .to_string(),
        ),
        "gbans" => Command::ServerBans,
        "closeroom" => {
            let (room, reason) = name_and_reason(args).ok_or_else(|| usage("/closeroom"))?;
            Command::CloseRoom { room, reason }
        }
        "openroom" => Command::OpenRoom(
            args.split_whitespace()
                .next()
                .ok_or_else(|| usage("/openroom"))?
                .to_string(),
        ),
        "connections" | "conns" => Command::Connections,
        _ => return Err(CommandError::Unknown(format!("/{name}"))),
    };
    Ok(cmd)
}

/// Completions of a partial `/command` word, for Tab in the terminal and GUI clients.
pub fn complete_command(prefix: &str) -> Vec<&'static str> {
    let prefix = prefix.to_lowercase();
    COMMANDS
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("hello"), Ok(Command::Say("hello".into())));
        assert_eq!(parse("//etc"), Ok(Command::Say("/etc".into())));
        assert_eq!(parse("/me waves"), Ok(Command::Me("waves".into())));
        assert_eq!(
            parse("/join #rust"),
            Ok(Command::Join {
                room: "#rust".into(),
                key: None
            })
        );
        assert_eq!(
            parse("/join rust"),
            Ok(Command::Join {
                room: "#rust".into(),
                key: None
            })
        );
        assert_eq!(
            parse("/join #vault sesame"),
            Ok(Command::Join {
                room: "#vault".into(),
                key: Some(Secret::new("sesame"))
            })
        );
        assert_eq!(
            parse("/part"),
            Ok(Command::Part {
                room: None,
                reason: None
            })
        );
        assert_eq!(
            parse("/part #rust bye all"),
            Ok(Command::Part {
                room: Some("#rust".into()),
                reason: Some("bye all".into())
            })
        );
        assert_eq!(
            parse("/part later"),
            Ok(Command::Part {
                room: None,
                reason: Some("later".into())
            })
        );
        assert_eq!(
            parse("/msg bob hi there"),
            Ok(Command::Msg {
                to: "bob".into(),
                text: "hi there".into()
            })
        );
        assert_eq!(parse("/query bob"), Ok(Command::Query("bob".into())));
        assert_eq!(parse("/nick zed"), Ok(Command::Nick("zed".into())));
        assert_eq!(parse("/who"), Ok(Command::Who(None)));
        assert_eq!(parse("/who #rust"), Ok(Command::Who(Some("#rust".into()))));
        assert_eq!(parse("/whois bob"), Ok(Command::Whois("bob".into())));
        assert!(parse("/whois").is_err());
        assert_eq!(parse("/rooms"), Ok(Command::Rooms));
        assert_eq!(parse("/topic"), Ok(Command::Topic(None)));
        assert_eq!(
            parse("/topic new one"),
            Ok(Command::Topic(Some("new one".into())))
        );
        assert_eq!(parse("/history"), Ok(Command::History(50)));
        assert_eq!(parse("/history 10"), Ok(Command::History(10)));
        assert_eq!(parse("/switch 2"), Ok(Command::Switch("2".into())));
        assert_eq!(parse("/close"), Ok(Command::Close));
        assert_eq!(parse("/quit"), Ok(Command::Quit(None)));
        assert_eq!(parse("/QUIT gone"), Ok(Command::Quit(Some("gone".into()))));
        assert_eq!(
            parse("/away at lunch"),
            Ok(Command::Away(Some("at lunch".into())))
        );
        assert_eq!(parse("/away"), Ok(Command::Away(None)));
        assert_eq!(parse("/back"), Ok(Command::Away(None)));
        assert_eq!(parse("/highlights"), Ok(Command::Highlights));
        assert_eq!(parse("/help"), Ok(Command::Help));
    }

    #[test]
    fn reports_bad_commands() {
        assert_eq!(parse("   "), Err(CommandError::Empty));
        assert_eq!(parse("/dance"), Err(CommandError::Unknown("/dance".into())));
        assert_eq!(
            parse("/msg bob"),
            Err(CommandError::Usage("/msg name text"))
        );
        assert_eq!(parse("/join"), Err(CommandError::Usage("/join #room")));
        assert_eq!(
            parse("/history x"),
            Err(CommandError::Usage("/history [n]"))
        );
        assert_eq!(parse("/me"), Err(CommandError::Usage("/me action")));
    }

    #[test]
    fn parses_moderation_commands() {
        assert_eq!(
            parse("/kick troll spamming links"),
            Ok(Command::Kick {
                name: "troll".into(),
                reason: Some("spamming links".into())
            })
        );
        assert_eq!(
            parse("/ban troll 2h flooding"),
            Ok(Command::Ban {
                target: "troll".into(),
                duration: Some(7_200),
                reason: Some("flooding".into()),
                mute: false
            })
        );
        assert_eq!(
            parse("/ban name:troll* 3 strikes"),
            Ok(Command::Ban {
                target: "name:troll*".into(),
                duration: None,
                reason: Some("3 strikes".into()),
                mute: false
            })
        );
        assert_eq!(
            parse("/mute bob 10m"),
            Ok(Command::Ban {
                target: "bob".into(),
                duration: Some(600),
                reason: None,
                mute: true
            })
        );
        assert_eq!(
            parse("/unmute bob"),
            Ok(Command::Unban {
                target: "bob".into(),
                mute: true
            })
        );
        assert_eq!(
            parse("/op alice"),
            Ok(Command::Role {
                name: "alice".into(),
                role: Role::Op
            })
        );
        assert_eq!(
            parse("/devoice bob"),
            Ok(Command::Role {
                name: "bob".into(),
                role: Role::Member
            })
        );
        assert_eq!(
            parse("/role bob owner"),
            Ok(Command::Role {
                name: "bob".into(),
                role: Role::Owner
            })
        );
        assert_eq!(parse("/mode"), Ok(Command::Mode(ModeChange::default())));
        assert_eq!(
            parse("/mode +mi-t +k sesame"),
            Ok(Command::Mode(ModeChange {
                moderated: Some(true),
                invite_only: Some(true),
                topic_lock: Some(false),
                registered_only: None,
                secret: None,
                key: Some(Secret::new("sesame")),
                limit: None,
                open: None,
            }))
        );
        assert_eq!(
            parse("/mode -n"),
            Ok(Command::Mode(ModeChange {
                open: Some(true),
                ..ModeChange::default()
            }))
        );
        assert_eq!(
            parse("/mode +l 20"),
            Ok(Command::Mode(ModeChange {
                limit: Some(20),
                ..ModeChange::default()
            }))
        );
        assert_eq!(
            parse("/mode -l"),
            Ok(Command::Mode(ModeChange {
                limit: Some(0),
                ..ModeChange::default()
            }))
        );
        assert!(parse("/mode +l lots").is_err());
        assert!(parse("/mode +l 0").is_err());
        assert_eq!(
            parse("/mode -k+R"),
            Ok(Command::Mode(ModeChange {
                registered_only: Some(true),
                key: Some(Secret::new("")),
                ..ModeChange::default()
            }))
        );
        assert_eq!(
            parse("/invite bob 1h"),
            Ok(Command::Invite {
                name: "bob".into(),
                duration: Some(3_600)
            })
        );
        assert_eq!(
            parse("/gban addr:203.0.113.0/24 7d botnet"),
            Ok(Command::ServerBan {
                target: "addr:203.0.113.0/24".into(),
                duration: Some(604_800),
                reason: Some("botnet".into())
            })
        );
        assert_eq!(
            parse("/closeroom #spam abandoned"),
            Ok(Command::CloseRoom {
                room: "#spam".into(),
                reason: Some("abandoned".into())
            })
        );
        assert_eq!(parse("/connections"), Ok(Command::Connections));
        assert!(matches!(parse("/mode +x"), Err(CommandError::Usage(_))));
        assert!(matches!(parse("/mode +k"), Err(CommandError::Usage(_))));
        assert!(matches!(
            parse("/role bob king"),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse("/invite bob soon"),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(parse("/kick"), Err(CommandError::Usage(_))));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("1w"), Some(604_800));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }

    #[test]
    fn completes_commands() {
        assert_eq!(
            complete_command("/h"),
            vec!["/history", "/highlights", "/help"]
        );
        assert_eq!(complete_command("/J"), vec!["/join"]);
        assert!(complete_command("/zz").is_empty());
    }
}

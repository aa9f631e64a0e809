//! What a user types: slash commands and plain text, parsed once for every front-end.

use crate::protocol::Secret;

/// One parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Plain text for the active room or conversation.
    Say(String),
    /// `/me waves`.
    Me(String),
    /// `/join #room`.
    Join(String),
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
    ("/nick", "/nick name", "change your name"),
    ("/who", "/who [#room]", "list the members of a room"),
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
        "join" | "j" => {
            let room = args
                .split_whitespace()
                .next()
                .ok_or_else(|| usage("/join"))?;
            let room = if room.starts_with('#') {
                room.to_string()
            } else {
                format!("#{room}")
            };
            Command::Join(room)
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
        assert_eq!(parse("/join #rust"), Ok(Command::Join("#rust".into())));
        assert_eq!(parse("/join rust"), Ok(Command::Join("#rust".into())));
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
    fn completes_commands() {
        assert_eq!(complete_command("/h"), vec!["/history", "/help"]);
        assert_eq!(complete_command("/J"), vec!["/join"]);
        assert!(complete_command("/zz").is_empty());
    }
}

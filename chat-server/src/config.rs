//! The configuration file: every flag of [`Config`] is also a key of a TOML file
//! (`--config FILE` or `CHAT_CONFIG`), named as the flag without its dashes (`max-per-ip = 50`).
//!
//! Precedence, highest first: a flag on the command line, its environment variable, the file,
//! the default. The file is read with the flags' own parsers, so a value means the same thing
//! wherever it is written; a key that is not a flag, or a value a flag would refuse, is an
//! error that names the file, the line and the key.
//!
//! [`render`] writes a configuration back as an annotated file (`--print-config`): the
//! defaults, or what the flags, the environment and a file make together.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::Config;

/// Why a configuration could not be made.
#[derive(Debug)]
pub enum LoadError {
    /// The command line (or an environment variable) is wrong, or asks for help or the
    /// version: clap prints it and picks the exit code.
    Args(clap::Error),
    /// The file cannot be read or is wrong: the message names the file, the line and the key.
    File(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Args(err) => write!(f, "{}", err.to_string().trim_end()),
            LoadError::File(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for LoadError {}

/// Flags that are not settings, and so not keys of the file.
const NOT_IN_FILE: &[&str] = &["help", "version", "config", "print_config", "check_config"];

/// Makes the configuration from the command line (`args`, the program's name first), the
/// environment and the file that either names.
pub fn load<I, T>(args: I) -> Result<Config, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = Config::command();
    // A first look, forgiving, only to find the file and what the command line and the
    // environment already set.
    let first = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .ok();
    let file = first
        .as_ref()
        .and_then(|m| m.get_one::<PathBuf>("config").cloned());
    let mut all = Vec::with_capacity(args.len() + 16);
    all.extend(args.first().cloned());
    if let (Some(path), Some(first)) = (&file, &first) {
        let text = std::fs::read_to_string(path).map_err(|err| {
            LoadError::File(format!(
                "cannot read the configuration file {}: {err}",
                path.display()
            ))
        })?;
        let set_elsewhere = |id: &str| {
            matches!(
                first.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        all.extend(
            file_args(&command, &text, set_elsewhere)
                .map_err(|err| LoadError::File(format!("{}:{err}", path.display())))?,
        );
    }
    all.extend(args.iter().skip(1).cloned());
    let matches = command.try_get_matches_from(all).map_err(LoadError::Args)?;
    Config::from_arg_matches(&matches).map_err(LoadError::Args)
}

/// The flags a file's settings stand for, leaving out those `set_elsewhere` says the command
/// line or the environment already gave. Every value is checked, even those left out. An error
/// starts with its line: `12: ...`.
fn file_args(
    command: &clap::Command,
    text: &str,
    set_elsewhere: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|err| {
        // toml says where: "TOML parse error at line 3, column 9 ...".
        let line = err.span().map_or(String::new(), |span| {
            format!("{}: ", line_of(text, span.start))
        });
        format!("{line}{}", err.message())
    })?;
    // Spans of every key, for the messages (the table itself forgets them).
    let spanned: std::collections::BTreeMap<String, toml::Spanned<toml::Value>> =
        toml::from_str(text).map_err(|err| err.message().to_string())?;
    let mut args = Vec::new();
    for (key, value) in &table {
        let line = spanned
            .get(key)
            .map_or(0, |v| line_of(text, v.span().start));
        let at = |message: String| format!("{line}: {message}");
        let id = key.replace('-', "_");
        let Some(arg) = command.get_arguments().find(|a| {
            a.get_id() == id.as_str() && !key.contains('_') && !NOT_IN_FILE.contains(&id.as_str())
        }) else {
            let hint = if key.contains('_') {
                format!(" (did you mean `{}`?)", key.replace('_', "-"))
            } else if value.is_table() {
                " (settings are not in sections: write every key at the top level)".to_string()
            } else {
                String::new()
            };
            return Err(at(format!(
                "`{key}` is not a setting{hint}; `chat-server --print-config` lists them all"
            )));
        };
        let long = arg.get_long().unwrap_or(key.as_str());
        let values: Vec<String> = match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
                if *b {
                    args.push(OsString::from(format!("--{long}")));
                }
                continue;
            }
            (ArgAction::SetTrue, other) => {
                return Err(at(format!(
                    "`{key}` is true or false, not {}",
                    describe(other)
                )));
            }
            (ArgAction::Append, toml::Value::Array(items)) => items
                .iter()
                .map(|item| scalar(item).ok_or_else(|| at(format!("`{key}` lists strings"))))
                .collect::<Result<_, _>>()?,
            (_, toml::Value::Array(_) | toml::Value::Table(_)) => {
                return Err(at(format!(
                    "`{key}` takes one value, not {}",
                    describe(value)
                )));
            }
            (_, scalar_value) => vec![scalar(scalar_value).ok_or_else(|| {
                at(format!(
                    "`{key}` is not true or false: give it a {}",
                    arg.get_value_names()
                        .and_then(|n| n.first())
                        .map_or("value".to_string(), |n| n.to_lowercase())
                ))
            })?],
        };
        // The flag alone, with its own parser, checks the value.
        let alone = clap::Command::new("chat-server").no_binary_name(true).arg(
            clap::Arg::new(arg.get_id().clone())
                .value_parser(arg.get_value_parser().clone())
                .allow_hyphen_values(true)
                .action(ArgAction::Append),
        );
        for value in &values {
            if let Err(err) = alone.clone().try_get_matches_from([value]) {
                let why = err.to_string();
                let why = why
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                // "invalid value 'x' for '<history>': why" without the placeholder.
                let why = match (why.find(" for '"), why.find("': ")) {
                    (Some(a), Some(b)) if a < b => format!("{}{}", &why[..a], &why[b + 1..]),
                    _ => why.to_string(),
                };
                return Err(at(format!("`{key}`: {why}")));
            }
        }
        if set_elsewhere(arg.get_id().as_str()) {
            continue;
        }
        for value in values {
            args.push(OsString::from(format!("--{long}={value}")));
        }
    }
    Ok(args)
}

/// A TOML value a flag can take, as the flag's text; `None` for booleans and containers.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Boolean(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// What kind of value this is, for a message.
fn describe(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a number",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// The line (from 1) holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Headings that start each group of settings in [`render`], by the group's first key.
const SECTIONS: &[(&str, &str)] = &[
    ("listen", "Listening and TLS"),
    ("data-dir", "Storage"),
    ("server-name", "What clients are told"),
    ("max-connections", "Connections and flood control"),
    ("max-rooms", "Rooms"),
    ("retention-days", "History retention"),
    ("require-account", "Accounts and operators"),
    ("irc-listen", "IRC"),
    ("metrics-listen", "Operations"),
];

/// Examples for settings that are unset by default.
fn example(key: &str) -> &'static str {
    match key {
        "tls-cert" => "\"/etc/letsencrypt/live/chat.example.org/fullchain.pem\"",
        "tls-key" => "\"/etc/letsencrypt/live/chat.example.org/privkey.pem\"",
        "plain-listen" => "\"127.0.0.1:53001\"",
        "motd" => "\"Welcome! Be kind; the rules are at https://example.org/rules\"",
        "irc-listen" => "\"127.0.0.1:6667\"",
        "irc-tls-listen" => "\"0.0.0.0:6697\"",
        "irc-ws-listen" => "\"127.0.0.1:8097\"",
        _ => "\"\"",
    }
}

/// Writes `config` as an annotated TOML file: each setting with its description and
/// environment variable; settings that are not set are shown commented out, with an example.
pub fn render(config: &Config) -> String {
    let values = toml::Table::try_from(config).expect("the configuration serializes");
    let mut out = String::from(
        "# chat-server configuration.\n\
         #\n\
         # Give it with `chat-server --config FILE` (or CHAT_CONFIG=FILE). Every key is also a\n\
         # flag (`--key`) and an environment variable (shown under each); a flag wins over the\n\
         # environment, which wins over this file, which wins over the default. Relative paths\n\
         # are relative to the server's working directory. `chat-server --check-config` checks a\n\
         # file without starting; SIGHUP reloads it (what can change live changes, the rest is\n\
         # logged as needing a restart).\n",
    );
    let command = Config::command();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_IN_FILE.contains(&id) {
            continue;
        }
        let key = id.replace('_', "-");
        if let Some((_, title)) = SECTIONS.iter().find(|(first, _)| *first == key) {
            let _ = write!(out, "\n# ---- {title} ----\n");
        }
        out.push('\n');
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut help = help.trim_end().to_string();
        if !help.ends_with(['.', ')', ':']) {
            help.push('.');
        }
        for line in textwrap::wrap(&help, 92) {
            let _ = writeln!(out, "# {line}");
        }
        if let Some(env) = arg.get_env() {
            let _ = writeln!(out, "# (environment: {})", env.to_string_lossy());
        }
        match values.get(&key) {
            Some(value) => {
                let _ = writeln!(out, "{key} = {value}");
            }
            None => {
                let _ = writeln!(out, "# {key} = {}", example(&key));
            }
        }
    }
    out
}

/// What a reload changed, by key: those applied live and those that wait for a restart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changed and applied.
    pub live: Vec<String>,
    /// Changed, but only a restart applies them.
    pub restart: Vec<String>,
}

/// Settings a running server takes from a reload (SIGHUP). The others (addresses, storage,
/// the server's name, history size, wire limits) wait for a restart.
pub const LIVE: &[&str] = &[
    "motd",
    "max-connections",
    "max-per-ip",
    "connect-burst",
    "connect-rate",
    "send-queue",
    "send-queue-bytes",
    "flood-burst",
    "flood-rate",
    "ping-interval",
    "ping-timeout",
    "register-timeout",
    "max-rooms",
    "room-create-burst",
    "room-create-rate",
    "direct-new-senders",
    "room-expiry",
    "require-account",
    "login-failures-per-account",
    "login-failures-account-ceiling",
    "login-failures-per-addr",
    "registrations-per-hour",
    "min-password",
    "password-memory-kib",
    "password-iterations",
    "operators",
    "max-rooms-per-guest",
    "max-owned-rooms",
    "invite-expiry",
    "log",
];

/// The settings that differ between `old` and `new`, split by whether they apply live.
pub fn changes(old: &Config, new: &Config) -> Changes {
    let old = toml::Table::try_from(old).expect("the configuration serializes");
    let new = toml::Table::try_from(new).expect("the configuration serializes");
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changes = Changes::default();
    for key in keys {
        if old.get(key) != new.get(key) {
            if LIVE.contains(&key.as_str()) {
                changes.live.push(key.clone());
            } else {
                changes.restart.push(key.clone());
            }
        }
    }
    changes
}

/// Checks what can be checked without starting: addresses parse, the TLS certificate and key
/// load, plaintext is allowed where it would be served, the data directory can be made.
/// Returns one line per problem.
pub fn check(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let mut addresses: Vec<(&str, &str, bool)> = vec![("listen", &config.listen, config.tls())];
    for (key, addr, tls) in [
        ("plain-listen", &config.plain_listen, false),
        ("irc-listen", &config.irc_listen, false),
        ("irc-tls-listen", &config.irc_tls_listen, true),
        ("irc-ws-listen", &config.irc_ws_listen, false),
    ] {
        if let Some(addr) = addr {
            addresses.push((key, addr, tls));
        }
    }
    for (key, addr, tls) in addresses {
        match std::net::ToSocketAddrs::to_socket_addrs(addr) {
            Err(err) => problems.push(format!("{key} = {addr:?}: not an address: {err}")),
            Ok(mut resolved) => {
                let public = resolved.any(|a| !a.ip().is_loopback());
                if public && !tls && !config.allow_plaintext {
                    problems.push(format!(
                        "{key} = {addr:?} serves plaintext on an address that is not loopback: \
                         give tls-cert and tls-key (or tls-self-signed), or allow-plaintext"
                    ));
                }
            }
        }
    }
    if let Err(err) = crate::metrics::address(&config.metrics_listen) {
        problems.push(format!(
            "metrics-listen = {:?}: {err}",
            config.metrics_listen
        ));
    }
    if config.irc_tls_listen.is_some() && !config.tls() {
        problems.push(
            "irc-tls-listen needs a certificate: tls-cert and tls-key, or tls-self-signed".into(),
        );
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key)
        && let Err(err) = crate::tls::Certificates::load(cert, key)
    {
        problems.push(format!("tls-cert/tls-key: {err:#}"));
    }
    if !config.in_memory && !creatable(&config.data_dir) {
        problems.push(format!(
            "data-dir = {:?}: neither a directory nor something that can be made one",
            config.data_dir
        ));
    }
    if let Some(room) = config.default_room()
        && let Err(err) = chat_core::names::normalize_room(&room)
    {
        problems.push(format!(
            "default-room = {room:?}: {err} (or `none` for no default room)"
        ));
    }
    if let Err(err) = crate::log_filter(&config.log) {
        problems.push(format!("log = {:?}: {err}", config.log));
    }
    problems
}

/// True when `dir` is a directory, or does not exist under a directory that does.
fn creatable(dir: &Path) -> bool {
    if dir.is_dir() {
        return true;
    }
    if dir.exists() {
        return false;
    }
    match dir.parent() {
        Some(parent) if parent.as_os_str().is_empty() => true,
        Some(parent) => creatable(parent),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(file: &str, args: &[&str]) -> Result<Config, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(&path, file).unwrap();
        let mut all = vec!["chat-server".to_string(), "--config".into()];
        all.push(path.display().to_string());
        all.extend(args.iter().map(ToString::to_string));
        load(all)
    }

    #[test]
    fn the_file_sets_what_the_command_line_does_not() {
        let config = load_with(
            "history = 5\nmotd = \"hi\"\noperators = [\"ada\", \"bob\"]\nrequire-account = true\n\
             ping-interval = 2.5\n",
            &["--history", "7"],
        )
        .unwrap();
        assert_eq!(config.history, 7, "the flag wins");
        assert_eq!(config.motd.as_deref(), Some("hi"));
        assert_eq!(config.operators, ["ada", "bob"]);
        assert!(config.require_account);
        assert_eq!(config.ping_interval, 2.5);
        assert_eq!(config.flood_rate, 5, "the default stays");
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let err = |file: &str| match load_with(file, &[]) {
            Err(LoadError::File(message)) => message,
            other => panic!("expected a file error, got {other:?}"),
        };
        let message = err("motd = \"x\"\n\nhistory = \"lots\"\n");
        assert!(message.contains(":3: `history`"), "{message}");
        assert!(message.contains("invalid digit"), "{message}");
        let message = err("# a comment\nmax_per_ip = 3\n");
        assert!(
            message.contains(":2: `max_per_ip` is not a setting"),
            "{message}"
        );
        assert!(message.contains("did you mean `max-per-ip`"), "{message}");
        let message = err("require-account = \"yes\"\n");
        assert!(
            message.contains(":1: `require-account` is true or false"),
            "{message}"
        );
        let message = err("listen = [\"a\"]\n");
        assert!(
            message.contains(":1: `listen` takes one value"),
            "{message}"
        );
        let message = err("history = 5\nhistory = 6\n");
        assert!(message.contains("duplicate key"), "{message}");
        assert!(message.contains(":2: "), "{message}");
        let message = err("[server]\nlisten = \"x\"\n");
        assert!(message.contains("not in sections"), "{message}");
        let message = err("config = \"other.toml\"\n");
        assert!(message.contains("`config` is not a setting"), "{message}");
    }

    #[test]
    fn a_value_on_the_command_line_is_still_checked_in_the_file() {
        // The flag wins, but a wrong value in the file is an error all the same: the next
        // start without the flag would fail.
        let err = load_with("history = -1\n", &["--history", "3"]).unwrap_err();
        assert!(err.to_string().contains(":1: `history`"), "{err}");
    }

    #[test]
    fn the_rendered_defaults_read_back_as_the_defaults() {
        let defaults = load(["chat-server"]).unwrap();
        let text = render(&defaults);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(&path, &text).unwrap();
        let again = load(["chat-server", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(changes(&defaults, &again), Changes::default());
        assert!(text.contains("\n# (environment: CHAT_HISTORY)\nhistory = 1000\n"));
        assert!(text.contains("\n# tls-cert = \""));
    }

    #[test]
    fn changes_tell_live_settings_from_those_that_need_a_restart() {
        let old = load(["chat-server"]).unwrap();
        let new = load([
            "chat-server",
            "--motd",
            "new",
            "--listen",
            "127.0.0.1:1",
            "--operator",
            "ada",
        ])
        .unwrap();
        let changes = changes(&old, &new);
        assert_eq!(changes.live, ["motd", "operators"]);
        assert_eq!(changes.restart, ["listen"]);
    }

    #[test]
    fn a_reload_takes_every_live_setting_and_no_other() {
        let old = load(["chat-server"]).unwrap();
        let defaults = toml::Table::try_from(&old).unwrap();
        let command = Config::command();
        // Every setting, live or not, given a value other than its default.
        let mut args = vec!["chat-server".to_string()];
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if NOT_IN_FILE.contains(&id) {
                continue;
            }
            let key = id.replace('_', "-");
            let long = arg.get_long().unwrap();
            let value = match (key.as_str(), defaults.get(&key)) {
                ("log", _) => "debug".to_string(),
                ("log-format", _) => "json".to_string(),
                ("metrics-listen", _) => "off".to_string(),
                ("tls-self-signed", _) => continue,
                (_, Some(toml::Value::Boolean(_))) => {
                    args.push(format!("--{long}"));
                    continue;
                }
                (_, Some(toml::Value::Integer(i))) => (i + 1).to_string(),
                (_, Some(toml::Value::Float(f))) => (f + 1.5).to_string(),
                (_, Some(toml::Value::String(s))) => format!("{s}x"),
                (_, Some(toml::Value::Array(_)) | None) if key.ends_with("listen") => {
                    "127.0.0.1:1".to_string()
                }
                (_, Some(toml::Value::Array(_)) | None) => "something".to_string(),
                (_, Some(other)) => panic!("{key} = {other}"),
            };
            args.push(format!("--{long}={value}"));
        }
        let new = load(args).unwrap();
        let all = changes(&old, &new);
        assert_eq!(all.live.len(), LIVE.len(), "{all:?}");
        let reloaded = old.with_live(&new);
        assert_eq!(
            changes(&old, &reloaded),
            Changes {
                live: all.live,
                restart: Vec::new()
            },
            "with_live takes exactly the live settings"
        );
    }

    #[test]
    fn check_finds_what_would_stop_a_start() {
        let config = load([
            "chat-server",
            "--listen",
            "0.0.0.0:53000",
            "--irc-listen",
            "nowhere",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
            "--log",
            "info,=x=",
        ])
        .unwrap();
        let problems = check(&config).join("\n");
        assert!(
            problems.contains("irc-listen = \"nowhere\": not an address"),
            "{problems}"
        );
        assert!(problems.contains("tls-cert/tls-key"), "{problems}");
        assert!(problems.contains("log = "), "{problems}");
        let fine = load(["chat-server", "--in-memory"]).unwrap();
        assert_eq!(check(&fine), Vec::<String>::new());
    }
}

//! Command-line flags every front-end shares: how to secure the connection and which account to
//! log in to. Front-ends flatten [`SecurityArgs`] into their own clap parser.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::protocol::Secret;
use crate::tls::{TlsMode, TlsOptions};

/// What the user wants from every client: highlights, the bell, logs on disk.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// Words besides your name that highlight a line and notify (comma-separated).
    #[arg(long, env = "CHAT_HIGHLIGHT", value_delimiter = ',')]
    pub highlight: Vec<String>,
    /// No bell (terminal clients), attention request or desktop notification (GUI) for mentions
    /// and direct messages.
    #[arg(long, env = "CHAT_NO_BELL")]
    pub no_bell: bool,
    /// Write plain-text logs of every conversation under this directory
    /// (`DIR/<server>/<conversation>.log`, as weechat's logger).
    #[arg(long, env = "CHAT_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
}

impl ClientArgs {
    /// A logger for `server` when `--log-dir` is given.
    pub fn logger(&self, server: &str) -> Option<crate::logs::Logger> {
        self.log_dir
            .as_deref()
            .map(|dir| crate::logs::Logger::new(dir, server, true))
    }
}

/// TLS and account flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// Always use TLS (the default for hosts other than loopback).
    #[arg(long, env = "CHAT_TLS", conflicts_with = "no_tls")]
    pub tls: bool,
    /// Never use TLS, even to a host other than loopback.
    #[arg(long, env = "CHAT_NO_TLS")]
    pub no_tls: bool,
    /// Trust only the CA certificates in this PEM file, instead of the system's.
    #[arg(long, env = "CHAT_CA")]
    pub ca: Option<PathBuf>,
    /// Trust a self-signed server certificate with this SHA-256 fingerprint (and remember it),
    /// without asking.
    #[arg(long, env = "CHAT_TRUST_FINGERPRINT")]
    pub trust_fingerprint: Option<String>,
    /// Log in to this account. The password comes from CHAT_PASSWORD, or is asked for without
    /// echo; it is never a flag, so it stays out of the shell history and the process list.
    #[arg(long, env = "CHAT_ACCOUNT")]
    pub account: Option<String>,
    /// Remember --account for this server (in `accounts` in the configuration directory; the
    /// password is never written), so that next time it is the default.
    #[arg(long, requires = "account")]
    pub remember: bool,
}

impl SecurityArgs {
    /// The TLS options these flags describe.
    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions {
            mode: if self.tls {
                TlsMode::On
            } else if self.no_tls {
                TlsMode::Off
            } else {
                TlsMode::Auto
            },
            ca: self.ca.clone(),
            trust_fingerprint: self.trust_fingerprint.clone(),
        }
    }

    /// The name to ask for: the account, if there is one, else `name`.
    pub fn name_or(&self, name: Option<&String>) -> Option<String> {
        self.account.clone().or_else(|| name.cloned())
    }

    /// The account to log in to at `host:port`: `--account`, or the one remembered for that
    /// server. With `--remember`, remembers `--account` for it first.
    pub fn account_for(&mut self, host: &str, port: u16) -> std::io::Result<Option<String>> {
        let accounts = RememberedAccounts::default_location();
        let server = format!("{host}:{port}");
        if let (Some(account), true) = (&self.account, self.remember) {
            accounts.set(&server, account)?;
        }
        if self.account.is_none() {
            self.account = accounts.get(&server);
        }
        Ok(self.account.clone())
    }

    /// The account's password: `CHAT_PASSWORD`, or asked on the terminal without echo.
    /// `None` when no account is asked for.
    pub fn password(&self) -> std::io::Result<Option<Secret>> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        if let Some(password) = std::env::var_os("CHAT_PASSWORD") {
            return Ok(Some(Secret::new(password.to_string_lossy())));
        }
        if !std::io::stdin().is_terminal() {
            return Err(std::io::Error::other(
                "--account needs CHAT_PASSWORD when stdin is not a terminal",
            ));
        }
        let password = rpassword::prompt_password(format!("Password for {account}: "))?;
        Ok(Some(Secret::new(password)))
    }
}

/// Asks a yes/no question on the terminal; false when there is none to ask on.
pub fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// The connector for `host:port` these flags ask for. Before any session starts it checks the
/// server's certificate: an unknown self-signed one is shown with its fingerprint and trusted
/// (and remembered) only if the user says yes on the terminal; a changed one is refused.
pub async fn connector(
    args: &SecurityArgs,
    host: &str,
    port: u16,
) -> std::io::Result<crate::client::TcpConnector> {
    use crate::tls::{Untrusted, check_certificate, explain};
    let options = args.tls_options();
    let connector = options.connector(host, port, None)?;
    match check_certificate(&connector).await {
        None => Ok(connector),
        Some(Untrusted::Unknown { fingerprint }) => {
            eprintln!(
                "{}",
                explain(
                    &connector.addr,
                    &Untrusted::Unknown {
                        fingerprint: fingerprint.clone()
                    }
                )
            );
            if confirm("Trust this certificate and remember it for this server?") {
                options.connector(host, port, Some(fingerprint))
            } else {
                Err(std::io::Error::other(format!(
                    "the certificate of {} is not trusted (or pass --trust-fingerprint)",
                    connector.addr
                )))
            }
        }
        Some(changed) => Err(std::io::Error::other(explain(&connector.addr, &changed))),
    }
}

/// Accounts remembered per server: `host:port account` lines in `accounts` in the client's
/// configuration directory. No password is ever written.
#[derive(Debug, Clone)]
pub struct RememberedAccounts {
    path: PathBuf,
}

impl RememberedAccounts {
    /// The file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `accounts` in [`crate::tls::config_dir`].
    pub fn default_location() -> Self {
        Self::at(crate::tls::config_dir().join("accounts"))
    }

    /// The account remembered for `server`.
    pub fn get(&self, server: &str) -> Option<String> {
        std::fs::read_to_string(&self.path)
            .ok()?
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(s, _)| *s == server)
            .map(|(_, a)| a.trim().to_string())
    }

    /// Remembers `account` for `server`, replacing what was remembered for it.
    pub fn set(&self, server: &str, account: &str) -> std::io::Result<()> {
        let old = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut text: String = old
            .lines()
            .filter(|l| l.split_once(' ').is_none_or(|(s, _)| s != server))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&format!("{server} {account}\n"));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_tls_options_and_the_name() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            security: SecurityArgs,
        }
        let parse = |args: &[&str]| {
            let mut all = vec!["client"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.security)
        };
        let auto = parse(&[]).unwrap();
        assert_eq!(auto.tls_options().mode, TlsMode::Auto);
        assert_eq!(
            auto.name_or(Some(&"guest".into())).as_deref(),
            Some("guest")
        );
        assert_eq!(auto.password().unwrap(), None, "no account, no password");
        let on = parse(&["--tls", "--ca", "ca.pem", "--trust-fingerprint", "AA:BB"]).unwrap();
        let options = on.tls_options();
        assert_eq!(options.mode, TlsMode::On);
        assert_eq!(options.ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert_eq!(options.trust_fingerprint.as_deref(), Some("AA:BB"));
        assert_eq!(
            parse(&["--no-tls"]).unwrap().tls_options().mode,
            TlsMode::Off
        );
        assert!(parse(&["--tls", "--no-tls"]).is_err(), "the two conflict");
        assert!(
            parse(&["--remember"]).is_err(),
            "--remember needs --account"
        );
        let account = parse(&["--account", "alice"]).unwrap();
        assert_eq!(
            account.name_or(Some(&"guest".into())).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn remembered_accounts_are_per_server_and_replaced() {
        let dir = std::env::temp_dir().join(format!("chat-args-{}", std::process::id()));
        let accounts = RememberedAccounts::at(dir.join("accounts"));
        assert_eq!(accounts.get("a:1"), None);
        accounts.set("a:1", "alice").unwrap();
        accounts.set("b:2", "bob").unwrap();
        accounts.set("a:1", "alicia").unwrap();
        assert_eq!(accounts.get("a:1").as_deref(), Some("alicia"));
        assert_eq!(accounts.get("b:2").as_deref(), Some("bob"));
        let text = std::fs::read_to_string(dir.join("accounts")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

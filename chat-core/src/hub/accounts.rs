//! Accounts: registering a name, logging in (at `hello` or later), several devices under one
//! account, password changes, deletion, and login throttling.
//!
//! Password hashing is slow on purpose, so the hub never does it: it asks the shell with
//! [`Output::Password`] and goes on with [`Input::PasswordDone`]. Meanwhile the connection's
//! frames wait in order, like a join waiting for its room. Throttles are checked before any work
//! is asked for, so a guessing client cannot make the server hash for it faster than the limits.

use std::net::IpAddr;

use super::*;

/// Longest password accepted, in bytes, so that nobody can make the server hash megabytes.
pub const MAX_PASSWORD: usize = 1024;

/// A registered account, as the hub keeps it.
#[derive(Debug)]
pub(super) struct Account {
    /// Display name (the name its owner uses).
    pub(super) name: String,
    /// The password hash in PHC string format, with its parameters.
    pub(super) hash: String,
    /// Keys of the rooms it is in, joined again when it logs in.
    pub(super) rooms: IndexSet<String>,
    /// Keys of the rooms it owns, against [`HubConfig::max_owned_rooms`].
    pub(super) owned: IndexSet<String>,
    /// The id it was registered under: roles given to it name this, so that a later account
    /// of the same name does not inherit them.
    pub(super) created: MsgId,
    /// How far it has read each conversation (room key, or the other person's name key).
    pub(super) markers: BTreeMap<String, MsgId>,
}

/// An account as loaded back from the store on restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredAccount {
    /// Display name.
    pub name: String,
    /// Password hash (PHC string).
    pub hash: String,
    /// Names of the rooms it is in.
    pub rooms: Vec<String>,
    /// Names of the rooms it owns.
    pub owned: Vec<String>,
    /// The id it was registered under (0 for accounts stored before ids were kept).
    pub created: MsgId,
    /// Its read markers: conversation key and the newest message read.
    pub markers: Vec<(String, MsgId)>,
}

/// Slow password work the shell does away from the hub, answered by [`Input::PasswordDone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordWork {
    /// Hash a new password (registration).
    Hash {
        /// The password.
        password: Secret,
    },
    /// Check a password against a stored hash (login, deletion).
    Verify {
        /// The password given.
        password: Secret,
        /// The stored hash.
        hash: String,
    },
    /// Check `password` against `hash` and, if it matches, hash `new` (password change).
    Change {
        /// The current password, as given.
        password: Secret,
        /// The stored hash.
        hash: String,
        /// The new password.
        new: Secret,
    },
}

/// What a connection waits for while the shell does its password work.
#[derive(Debug)]
pub(super) enum AuthWait {
    /// `hello` with a password, or `login`: log in to this account (key).
    Login { account: String, at_hello: bool },
    /// `register` of the connection's name.
    Register,
    /// `oper`: make the connection a server operator with this account's (key) rights.
    Oper { account: String },
    /// `passwd`.
    Change,
    /// `unregister`.
    Delete,
}

/// Failed logins of one account or one address, and the lockout they earned.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// Failures within the last minute.
    failures: VecDeque<UnixMillis>,
    /// No attempt is checked before this.
    locked_until: UnixMillis,
    /// Lockouts so far; each one lasts twice as long as the one before.
    lockouts: u32,
}

/// A throttle's window.
const MINUTE: u64 = 60_000;
/// The account-wide ceiling's window.
const HOUR: u64 = 60 * MINUTE;
/// The longest lockout.
const MAX_LOCKOUT: u64 = 3_600_000;
/// Throttles kept before the inactive ones are let go.
const THROTTLES_KEPT: usize = 10_000;

impl Throttle {
    /// How long until the next attempt may be checked, if it is locked.
    pub(super) fn wait(&self, now: UnixMillis) -> Option<u64> {
        (now < self.locked_until).then(|| self.locked_until - now)
    }

    /// Counts a failure; at `limit` failures within a minute it locks, for one minute the first
    /// time and twice as long each time after, up to an hour.
    pub(super) fn fail(&mut self, now: UnixMillis, limit: u32) {
        while self.failures.front().is_some_and(|&t| t + MINUTE <= now) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= limit as usize {
            self.lockouts += 1;
            let lockout = MINUTE.saturating_mul(1 << (self.lockouts - 1).min(6));
            self.locked_until = now + lockout.min(MAX_LOCKOUT);
            self.failures.clear();
        }
    }

    /// Nothing left to remember.
    pub(super) fn idle(&self, now: UnixMillis) -> bool {
        now >= self.locked_until && self.failures.back().is_none_or(|&t| t + MINUTE <= now)
    }
}

/// The address a throttle counts against: IPv4 as it is, IPv6 cut to its /64 (one host's
/// usual allocation, so that one machine cannot rotate through addresses). An IPv4 client on
/// a dual-stack socket (`::ffff:a.b.c.d`) is its IPv4 address, not a share of `::/64`.
pub(super) fn addr_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

impl Hub {
    /// Loads accounts back from the store. Accounts whose names the current rules refuse (or
    /// that collide with one loaded before) are not loaded; their names are returned for the
    /// server to log.
    pub fn restore_accounts(&mut self, accounts: Vec<StoredAccount>) -> Vec<String> {
        let mut refused = Vec::new();
        for stored in accounts {
            let Ok(name) = names::normalize_name(&stored.name) else {
                refused.push(stored.name);
                continue;
            };
            let key = names::key(&name);
            // A look-alike of an account loaded before was accepted when it was registered
            // (under older rules): it stays. Only the same name twice is refused.
            if self.accounts.contains_key(&key) {
                refused.push(stored.name);
                continue;
            }
            let keys = |rooms: &[String]| {
                rooms
                    .iter()
                    .filter_map(|r| names::normalize_room(r).ok())
                    .map(|r| names::key(&r))
                    .collect()
            };
            identity::index_skeletons(&mut self.account_skeletons, &key);
            self.accounts.insert(
                key,
                Account {
                    name,
                    hash: stored.hash,
                    rooms: keys(&stored.rooms),
                    owned: keys(&stored.owned),
                    created: stored.created,
                    markers: stored.markers.into_iter().collect(),
                },
            );
        }
        refused
    }

    /// True when an account of that name (in any case) is registered.
    pub fn account_exists(&self, name: &str) -> bool {
        self.accounts.contains_key(&names::key(name))
    }

    /// Number of registered accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The account of that name, or one it looks like ([`identity::look_alike`]), if any.
    pub(super) fn account_like(&self, name: &str) -> Option<String> {
        let key = names::key(name);
        if self.accounts.contains_key(&key) {
            return Some(key);
        }
        identity::look_alike(&self.account_skeletons, name)
    }

    pub(super) fn cmd_register(&mut self, now: UnixMillis, conn: ConnId, password: Secret) {
        if self.logged_in(conn).is_some() {
            self.reply(
                conn,
                &error(
                    ErrorCode::AlreadyLoggedIn,
                    "you are logged in to an account",
                ),
            );
            return;
        }
        if !self.acceptable_password(conn, &password) {
            return;
        }
        let name = self.name_of(conn);
        if let Some(account) = self.account_like(&name) {
            let shown = self.accounts[&account].name.clone();
            self.reply(
                conn,
                &error(
                    ErrorCode::AccountExists,
                    &format!("the account {shown} exists already"),
                ),
            );
            return;
        }
        let limit = self.config.registrations_per_addr_per_hour as usize;
        let Some(addr) = self.conns.get(&conn).map(|c| c.addr) else {
            return;
        };
        if limit > 0 {
            let made = self.registrations.entry(addr).or_default();
            while made.front().is_some_and(|&t| t + 60 * MINUTE <= now) {
                made.pop_front();
            }
            if made.len() >= limit {
                self.reply(
                    conn,
                    &error(
                        ErrorCode::RegistrationThrottled,
                        &format!("your address may register {limit} accounts an hour; try later"),
                    ),
                );
                return;
            }
            made.push_back(now);
            if self.registrations.len() > THROTTLES_KEPT {
                self.registrations
                    .retain(|_, made| made.back().is_some_and(|&t| t + 60 * MINUTE > now));
            }
        }
        self.wait_for_password(conn, AuthWait::Register, PasswordWork::Hash { password }, 0);
    }

    pub(super) fn cmd_login(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        account: &str,
        password: Secret,
    ) {
        if self.logged_in(conn).is_some() {
            self.reply(
                conn,
                &error(
                    ErrorCode::AlreadyLoggedIn,
                    "you are logged in to an account; log out first",
                ),
            );
            return;
        }
        self.start_login(now, conn, account, password, false);
    }

    /// Checks the throttles, then asks the shell to verify the password.
    pub(super) fn start_login(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        raw: &str,
        password: Secret,
        at_hello: bool,
    ) {
        let key = names::normalize_name(raw).map_or_else(|_| raw.to_string(), |n| names::key(&n));
        let Some(delay) = self.may_try(now, conn, &key) else {
            return;
        };
        let hash = self.accounts.get(&key).map(|a| a.hash.clone());
        match hash {
            Some(hash) if password.expose().len() <= MAX_PASSWORD => self.wait_for_password(
                conn,
                AuthWait::Login {
                    account: key,
                    at_hello,
                },
                PasswordWork::Verify { password, hash },
                delay,
            ),
            _ => self.login_failed(now, conn, &key, raw),
        }
    }

    /// `oper`: the password of an operator's account makes this connection an operator, as
    /// IRC's OPER does, through the same throttles as a login.
    pub(super) fn cmd_oper(&mut self, now: UnixMillis, conn: ConnId, raw: &str, password: Secret) {
        let key = names::normalize_name(raw).map_or_else(|_| raw.to_string(), |n| names::key(&n));
        if !self.operators.contains(&key) {
            self.reply(
                conn,
                &error(
                    ErrorCode::NotPermitted,
                    &format!("{raw} is not one of this server's operators"),
                ),
            );
            return;
        }
        let Some(delay) = self.may_try(now, conn, &key) else {
            return;
        };
        match self.accounts.get(&key).map(|a| a.hash.clone()) {
            Some(hash) if password.expose().len() <= MAX_PASSWORD => self.wait_for_password(
                conn,
                AuthWait::Oper { account: key },
                PasswordWork::Verify { password, hash },
                delay,
            ),
            _ => self.login_failed(now, conn, &key, raw),
        }
    }

    pub(super) fn cmd_logout(&mut self, now: UnixMillis, conn: ConnId) {
        let Some(account) = self.require_login(conn) else {
            return;
        };
        let shown = self.accounts[&account].name.clone();
        self.reply(conn, &ServerMsg::LoggedOut { account: shown });
        self.kick(now, conn, "logged out");
    }

    pub(super) fn cmd_passwd(&mut self, now: UnixMillis, conn: ConnId, old: Secret, new: Secret) {
        let Some(account) = self.require_login(conn) else {
            return;
        };
        if !self.acceptable_password(conn, &new) {
            return;
        }
        let Some(delay) = self.may_try(now, conn, &account) else {
            return;
        };
        if old.expose().len() > MAX_PASSWORD {
            // Longer than any password: wrong, without hashing it.
            let shown = self.name_of(conn);
            self.login_failed(now, conn, &account, &shown);
            return;
        }
        let hash = self.accounts[&account].hash.clone();
        let work = PasswordWork::Change {
            password: old,
            hash,
            new,
        };
        self.wait_for_password(conn, AuthWait::Change, work, delay);
    }

    pub(super) fn cmd_unregister(&mut self, now: UnixMillis, conn: ConnId, password: Secret) {
        let Some(account) = self.require_login(conn) else {
            return;
        };
        let Some(delay) = self.may_try(now, conn, &account) else {
            return;
        };
        if password.expose().len() > MAX_PASSWORD {
            let shown = self.name_of(conn);
            self.login_failed(now, conn, &account, &shown);
            return;
        }
        let hash = self.accounts[&account].hash.clone();
        self.wait_for_password(
            conn,
            AuthWait::Delete,
            PasswordWork::Verify { password, hash },
            delay,
        );
    }

    /// The shell finished a connection's password work.
    pub(super) fn handle_password_done(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        verified: bool,
        hash: Option<String>,
    ) {
        let Some((wait, tag)) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| Some((c.auth.take()?, c.auth_tag)))
        else {
            return;
        };
        // What follows answers the request that asked for the password work.
        let outer = self.tag.replace((conn, tag));
        self.password_answer(now, conn, wait, verified, hash);
        self.tag = outer;
        self.run_delayed(now, conn);
    }

    fn password_answer(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        wait: AuthWait,
        verified: bool,
        hash: Option<String>,
    ) {
        let account = self.logged_in(conn);
        match wait {
            AuthWait::Login { account, at_hello } => {
                if verified && self.accounts.contains_key(&account) {
                    self.forgive(conn, &account);
                    if at_hello {
                        let name = self.accounts[&account].name.clone();
                        self.take_account_name(conn, &account);
                        self.finish_hello(now, conn, name, Some(account));
                    } else {
                        self.log_in(conn, &account);
                        self.enforce_server_ban(now, conn);
                    }
                } else {
                    let shown = self.accounts.get(&account).map(|a| a.name.clone());
                    self.login_failed(now, conn, &account, shown.as_deref().unwrap_or(&account));
                }
            }
            AuthWait::Oper { account } => {
                if verified && self.accounts.contains_key(&account) {
                    self.forgive(conn, &account);
                    let shown = self.accounts[&account].name.clone();
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.oper = Some(account);
                    }
                    self.audit(conn, format!("became a server operator as {shown}"));
                    self.reply(conn, &ServerMsg::Operator { account: shown });
                } else {
                    let shown = self.accounts.get(&account).map(|a| a.name.clone());
                    self.login_failed(now, conn, &account, shown.as_deref().unwrap_or(&account));
                }
            }
            AuthWait::Register => {
                if let Some(hash) = hash {
                    self.create_account(conn, hash);
                }
            }
            AuthWait::Change => match (account, verified, hash) {
                (Some(account), true, Some(hash)) if self.accounts.contains_key(&account) => {
                    self.forgive(conn, &account);
                    let acc = self.accounts.get_mut(&account).expect("checked");
                    acc.hash = hash;
                    let shown = acc.name.clone();
                    // Whoever knew the old password is out: the account's other devices are
                    // disconnected, as an operator's reset does; this one stays.
                    for device in self.devices_of(&account) {
                        if device != conn {
                            self.kick(now, device, "the account's password was changed");
                        }
                    }
                    let id = self.store_account(&account);
                    self.sequence(
                        id,
                        Pending::Reply {
                            conn,
                            msg: ServerMsg::PasswordChanged { account: shown },
                            tag: self.tag_for(conn),
                        },
                    );
                }
                (Some(account), _, _) => {
                    let shown = self.name_of(conn);
                    self.login_failed(now, conn, &account, &shown);
                }
                (None, _, _) => {}
            },
            AuthWait::Delete => match account {
                Some(account) if verified && self.accounts.contains_key(&account) => {
                    self.delete_account(now, conn, &account);
                }
                Some(account) => {
                    let shown = self.name_of(conn);
                    self.login_failed(now, conn, &account, &shown);
                }
                None => {}
            },
        }
    }

    /// The account `conn` is logged in to.
    pub(super) fn logged_in(&self, conn: ConnId) -> Option<String> {
        self.conns.get(&conn).and_then(|c| c.account.clone())
    }

    fn require_login(&mut self, conn: ConnId) -> Option<String> {
        let account = self.logged_in(conn);
        if account.is_none() {
            self.reply(
                conn,
                &error(
                    ErrorCode::NotLoggedIn,
                    "you are not logged in to an account",
                ),
            );
        }
        account
    }

    fn acceptable_password(&mut self, conn: ConnId, password: &Secret) -> bool {
        let chars = password.expose().chars().count();
        let min = self.config.min_password;
        if chars >= min && password.expose().len() <= MAX_PASSWORD {
            return true;
        }
        self.reply(
            conn,
            &error(
                ErrorCode::WeakPassword,
                &format!("a password is {min} to {MAX_PASSWORD} bytes long"),
            ),
        );
        false
    }

    /// Whether `conn` may try a password on `account` now: `None` (and an error sent) when its
    /// address is locked out of that account, or out of every account; else how long the
    /// attempt waits first (0, or [`HubConfig::login_ceiling_delay`] while the account is over
    /// its ceiling of failed logins from everywhere).
    fn may_try(&mut self, now: UnixMillis, conn: ConnId, account: &str) -> Option<u64> {
        let addr = self.conns.get(&conn).map(|c| c.addr)?;
        let wait = [
            self.login_throttles
                .get(&(account.to_string(), addr))
                .and_then(|t| t.wait(now)),
            self.addr_throttles.get(&addr).and_then(|t| t.wait(now)),
        ]
        .into_iter()
        .flatten()
        .max();
        let Some(wait) = wait else {
            let ceiling = self.config.login_failures_account_ceiling as usize;
            let over = ceiling > 0
                && self
                    .account_failures
                    .get(account)
                    .is_some_and(|f| f.iter().filter(|&&t| t + HOUR > now).count() >= ceiling);
            return Some(if over {
                self.config.login_ceiling_delay
            } else {
                0
            });
        };
        self.reply(
            conn,
            &error(
                ErrorCode::LoginThrottled,
                &format!(
                    "too many failed logins from your address; try again in {} s",
                    wait.div_ceil(1000)
                ),
            ),
        );
        None
    }

    /// A right password from `conn`: its address's failures on the account are forgiven.
    fn forgive(&mut self, conn: ConnId, account: &str) {
        if let Some(addr) = self.conns.get(&conn).map(|c| c.addr) {
            self.login_throttles.remove(&(account.to_string(), addr));
        }
    }

    /// Forgets every failed login counted against an account (deleted, or reset by the
    /// server's operator).
    fn forget_failures(&mut self, account: &str) {
        self.login_throttles.retain(|(a, _), _| a != account);
        self.account_failures.remove(account);
    }

    /// Counts a failed password against the account and address pair (if the account exists),
    /// the account as a whole and the address, tells the client, and tells the shell (to log
    /// it; never with the password).
    fn login_failed(&mut self, now: UnixMillis, conn: ConnId, key: &str, shown: &str) {
        let Some(addr) = self.conns.get(&conn).map(|c| c.addr) else {
            return;
        };
        let (per_account, per_addr) = (
            self.config.login_failures_per_account,
            self.config.login_failures_per_addr,
        );
        if self.accounts.contains_key(key) {
            if per_account > 0 {
                self.login_throttles
                    .entry((key.to_string(), addr))
                    .or_default()
                    .fail(now, per_account);
            }
            let ceiling = self.config.login_failures_account_ceiling as usize;
            if ceiling > 0 {
                let failures = self.account_failures.entry(key.to_string()).or_default();
                while failures.front().is_some_and(|&t| t + HOUR <= now)
                    || failures.len() >= ceiling
                {
                    failures.pop_front();
                }
                failures.push_back(now);
            }
        }
        if per_addr > 0 {
            self.addr_throttles
                .entry(addr)
                .or_default()
                .fail(now, per_addr);
        }
        if self.addr_throttles.len().max(self.login_throttles.len()) > THROTTLES_KEPT {
            self.addr_throttles.retain(|_, t| !t.idle(now));
            self.login_throttles.retain(|_, t| !t.idle(now));
        }
        if self.account_failures.len() > THROTTLES_KEPT {
            self.account_failures
                .retain(|_, f| f.back().is_some_and(|&t| t + HOUR > now));
        }
        self.reply(
            conn,
            &error(ErrorCode::BadCredentials, "wrong account name or password"),
        );
        self.outputs.push_back(Output::LoginFailed {
            conn,
            account: shown.chars().take(64).collect(),
        });
    }

    fn wait_for_password(&mut self, conn: ConnId, wait: AuthWait, work: PasswordWork, delay: u64) {
        let tag = self.tag_for(conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth = Some(wait);
            c.auth_tag = tag;
            self.outputs
                .push_back(Output::Password { conn, work, delay });
        }
    }

    /// Takes an account's name for `conn`: any guest using it gets a clear error and a
    /// fallback name, and `conn` joins the devices holding it.
    fn take_account_name(&mut self, conn: ConnId, account: &str) {
        let name = self.accounts[account].name.clone();
        let guests: Vec<ConnId> = self
            .names
            .get(account)
            .map(|h| {
                h.iter()
                    .copied()
                    .filter(|&g| g != conn && self.logged_in(g).is_none())
                    .collect()
            })
            .unwrap_or_default();
        for guest in guests {
            let fallback = self.fallback_name(guest);
            self.reply(
                guest,
                &error(
                    ErrorCode::NameReserved,
                    &format!(
                        "{name} is a registered account and its owner has logged in; you are now {fallback}"
                    ),
                ),
            );
            self.hold_name(guest, &fallback);
            self.rename(guest, fallback);
        }
        self.hold_name(conn, &name);
    }

    /// Logs a registered connection in: it takes the account's name and rooms.
    fn log_in(&mut self, conn: ConnId, account: &str) {
        let name = self.accounts[account].name.clone();
        self.take_account_name(conn, account);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.account = Some(account.to_string());
        }
        self.rename(conn, name.clone());
        self.reply(conn, &ServerMsg::LoggedIn { account: name });
        self.deliver_offline(conn);
        // The rooms it was in as a guest become the account's, on every device.
        let rooms: Vec<String> = self.conns[&conn].rooms.iter().cloned().collect();
        for key in rooms {
            self.account_room(conn, &key, true);
            self.share_room(conn, &key);
        }
        self.queue_account_rooms(conn);
    }

    /// Queues joins of the rooms the account is in (stored, or joined by its other devices)
    /// that `conn` is not in yet. They run in order, loading rooms from the store if need be,
    /// before anything else the client sent, and cost it no flood tokens.
    pub(super) fn queue_account_rooms(&mut self, conn: ConnId) {
        let Some(account) = self.logged_in(conn) else {
            return;
        };
        let mut keys: IndexSet<String> = self.accounts[&account].rooms.clone();
        for device in self.other_devices(conn) {
            keys.extend(self.conns[&device].rooms.iter().cloned());
        }
        let names_of: Vec<String> = keys
            .iter()
            .filter(|k| !self.conns[&conn].rooms.contains(*k))
            .map(|k| {
                self.rooms
                    .get(k)
                    .map_or_else(|| k.clone(), |r| r.name.clone())
            })
            .collect();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for room in names_of {
            c.delayed.insert(
                c.free,
                liveness::Queued::Frame(
                    Ok(ClientMsg::Join {
                        room,
                        since: None,
                        key: None,
                    }),
                    0,
                ),
            );
            c.free += 1;
        }
    }

    fn create_account(&mut self, conn: ConnId, hash: String) {
        let name = self.name_of(conn);
        let key = names::key(&name);
        if name.is_empty() || self.account_like(&name).is_some() {
            self.reply(
                conn,
                &error(
                    ErrorCode::AccountExists,
                    &format!("the account {name} exists already"),
                ),
            );
            return;
        }
        let rooms = self.conns[&conn].rooms.clone();
        identity::index_skeletons(&mut self.account_skeletons, &key);
        self.accounts.insert(
            key.clone(),
            Account {
                name: name.clone(),
                hash,
                rooms,
                owned: IndexSet::new(),
                created: 0,
                markers: BTreeMap::new(),
            },
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.account = Some(key.clone());
        }
        let id = self.store_account(&key);
        if let Some(account) = self.accounts.get_mut(&key) {
            account.created = id;
        }
        self.store_account_rooms(&key);
        self.sequence(
            id,
            Pending::Reply {
                conn,
                msg: ServerMsg::LoggedIn { account: name },
                tag: self.tag_for(conn),
            },
        );
    }

    fn delete_account(&mut self, now: UnixMillis, conn: ConnId, account: &str) {
        if !self.accounts.contains_key(account) {
            return;
        }
        for device in self.other_devices(conn) {
            self.kick(now, device, "account deleted");
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.account = None;
        }
        let Some((name, id)) = self.forget_account(account) else {
            return;
        };
        self.sequence(
            id,
            Pending::Reply {
                conn,
                msg: ServerMsg::AccountDeleted { account: name },
                tag: self.tag_for(conn),
            },
        );
    }

    /// Removes an account and everything kept for it, and hands its deletion to the store.
    /// Returns its name and the id the deletion is stored under.
    fn forget_account(&mut self, account: &str) -> Option<(String, MsgId)> {
        let deleted = self.accounts.remove(account)?;
        self.forget_failures(account);
        self.offline.remove(account);
        identity::unindex_skeletons(&mut self.account_skeletons, account);
        let id = self.take_id();
        if self.config.durable {
            self.outputs
                .push_back(Output::Store(Record::AccountDeleted {
                    id,
                    account: deleted.name.clone(),
                }));
        }
        Some((deleted.name, id))
    }

    /// The connections logged in to an account (by key).
    fn devices_of(&self, account: &str) -> Vec<ConnId> {
        let mut devices: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.account.as_deref() == Some(account))
            .map(|(&conn, _)| conn)
            .collect();
        devices.sort();
        devices
    }

    /// The server's operator sets an account's password (`chat-server accounts
    /// reset-password`, given the new hash): every device logged in to it is disconnected, so
    /// that whoever knew the old password is out, and its failed-login lock is lifted. Returns
    /// the id the change is stored under ([`Input::Committed`] says when it is on disk).
    pub fn reset_password(
        &mut self,
        now: UnixMillis,
        account: &str,
        hash: String,
    ) -> Result<MsgId, String> {
        let key = names::key(account);
        let Some(acc) = self.accounts.get_mut(&key) else {
            return Err(format!("there is no account called {account}"));
        };
        acc.hash = hash;
        self.forget_failures(&key);
        for device in self.devices_of(&key) {
            self.kick(now, device, "password reset by the server's operator");
        }
        Ok(self.store_account(&key))
    }

    /// The server's operator makes an account (`chat-server accounts add`), with a password
    /// hash made outside the hub: to bootstrap an operator without a client. The name follows
    /// the rules a registration does (valid, not a service's, not an account's nor like one).
    /// Returns the id the account is stored under.
    pub fn add_account(&mut self, name: &str, hash: String) -> Result<MsgId, String> {
        let name = names::normalize_name(name).map_err(|e| format!("{name:?}: {e}"))?;
        if names::is_service(&name) {
            return Err(format!("{name} is a service's name"));
        }
        if let Some(other) = self.account_like(&name) {
            let shown = self.accounts[&other].name.clone();
            return Err(if other == names::key(&name) {
                format!("the account {shown} exists already")
            } else {
                format!("{name} looks like the account {shown}")
            });
        }
        let key = names::key(&name);
        identity::index_skeletons(&mut self.account_skeletons, &key);
        self.accounts.insert(
            key.clone(),
            Account {
                name,
                hash,
                rooms: IndexSet::new(),
                owned: IndexSet::new(),
                created: 0,
                markers: BTreeMap::new(),
            },
        );
        let id = self.store_account(&key);
        if let Some(account) = self.accounts.get_mut(&key) {
            account.created = id;
        }
        Ok(id)
    }

    /// The server's operator deletes an account (`chat-server accounts delete`): every device
    /// logged in to it is disconnected, and the name is free to register again. Returns the id
    /// the deletion is stored under.
    pub fn remove_account(&mut self, now: UnixMillis, account: &str) -> Result<MsgId, String> {
        let key = names::key(account);
        if !self.accounts.contains_key(&key) {
            return Err(format!("there is no account called {account}"));
        }
        for device in self.devices_of(&key) {
            self.kick(now, device, "account deleted by the server's operator");
        }
        let (_, id) = self.forget_account(&key).expect("checked above");
        Ok(id)
    }

    /// Hands the account (name and hash) to the store; returns the id it was sequenced under.
    fn store_account(&mut self, key: &str) -> MsgId {
        let id = self.take_id();
        if self.config.durable {
            let account = &self.accounts[key];
            self.outputs.push_back(Output::Store(Record::Account {
                id,
                name: account.name.clone(),
                hash: account.hash.clone(),
            }));
        }
        id
    }

    /// Hands the account's rooms to the store.
    pub(super) fn store_account_rooms(&mut self, key: &str) {
        if !self.config.durable {
            return;
        }
        let id = self.take_id();
        let account = &self.accounts[key];
        let shown = |keys: &IndexSet<String>| {
            keys.iter()
                .map(|k| {
                    self.rooms
                        .get(k)
                        .map_or_else(|| k.clone(), |r| r.name.clone())
                })
                .collect()
        };
        self.outputs.push_back(Output::Store(Record::AccountRooms {
            id,
            account: account.name.clone(),
            rooms: shown(&account.rooms),
            owned: shown(&account.owned),
        }));
    }

    /// Notes that `conn`'s account is in (or, with `joined` false, left) the room.
    pub(super) fn account_room(&mut self, conn: ConnId, key: &str, joined: bool) {
        let Some(account) = self.logged_in(conn) else {
            return;
        };
        let Some(acc) = self.accounts.get_mut(&account) else {
            return;
        };
        let changed = if joined {
            acc.rooms.insert(key.to_string())
        } else {
            acc.rooms.shift_remove(key)
        };
        if changed {
            self.store_account_rooms(&account);
        }
    }
}

//! Moderation: room roles, bans and mutes, kicks, invitations, room modes, and what server
//! operators may do (kill, server-wide bans, closing rooms, listing connections).
//!
//! Roles and account bans attach to accounts, never to names: a role is granted to an account
//! as it was when the role was given (its registration id), so an account deleted and then
//! registered again by someone else does not inherit it. Guests are banned by address (or by
//! name pattern), so that renaming or reconnecting does not get around it. Every rule here is
//! checked in the hub; clients only render what it says.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::*;
use crate::protocol::{BanInfo, ConnInfo, Role, RoomModes};

/// What a ban (or an invitation) matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Rule {
    /// An account, by key.
    Account(String),
    /// Names (keys) matching a pattern with `*` and `?`.
    Name(String),
    /// Addresses within a prefix (IPv6 addresses as the hub keeps them, cut to their /64).
    Addr { addr: IpAddr, bits: u8 },
    /// A guest: this name (key) from this address, as the hub keeps it. An invitation of a
    /// guest is theirs, not the bare name's: someone else taking the name after they leave
    /// is not invited.
    Guest { name: String, addr: IpAddr },
}

impl Rule {
    fn matches(&self, name_key: Option<&str>, account: Option<&str>, addr: IpAddr) -> bool {
        match self {
            Rule::Account(a) => account == Some(a.as_str()),
            Rule::Name(pattern) => name_key.is_some_and(|n| {
                // As typed, and by look: `spam*` also stops `sp\u{430}mmer`.
                names::glob(pattern, n) || {
                    let pattern = names::skeleton_pattern(pattern);
                    names::skeletons(n).iter().any(|s| names::glob(&pattern, s))
                }
            }),
            Rule::Addr { addr: net, bits } => in_prefix(addr, *net, *bits),
            Rule::Guest { name, addr: from } => {
                name_key == Some(name.as_str()) && account.is_none() && addr == *from
            }
        }
    }
}

/// A ban or mute: what it matches, and what members are shown of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    rule: Rule,
    info: BanInfo,
}

impl Ban {
    fn live(&self, now: UnixMillis) -> bool {
        self.info.expires.is_none_or(|e| e > now)
    }
}

/// A role given to an account, valid while the account is the one it was given to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Grant {
    role: Role,
    /// The account's registration id when the role was given.
    account: MsgId,
}

/// An invitation to a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Invitation {
    rule: Rule,
    expires: Option<UnixMillis>,
}

/// A room's moderation state: roles, bans, invitations and modes. It is stored with the room
/// and loaded back with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// Roles by account key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    roles: BTreeMap<String, Grant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    bans: Vec<Ban>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    invites: Vec<Invitation>,
    /// The modes but `key`, which [`RoomSettings::modes`] derives from the key itself.
    #[serde(default)]
    modes: RoomModes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl RoomSettings {
    /// Nothing set: a room with these settings needs no storing.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The modes as members see them.
    pub(super) fn modes(&self) -> RoomModes {
        RoomModes {
            key: self.key.is_some(),
            ..self.modes
        }
    }
}

/// Powers, lowest first: a role in the room, or server operator above every role.
const SERVER_OPERATOR: u8 = 4;

fn power(role: Role) -> u8 {
    match role {
        Role::Member => 0,
        Role::Voice => 1,
        Role::Op => 2,
        Role::Owner => 3,
    }
}

fn in_prefix(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(bits.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(bits.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Parses `IP` or `IP/BITS`; IPv6 prefixes longer than /64 are cut to /64, as the hub keys
/// IPv6 addresses.
fn parse_addr(raw: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match raw.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits.parse::<u8>().ok()?)),
        None => (raw, None),
    };
    let ip: IpAddr = ip.parse().ok()?;
    let (max, keep) = match ip {
        IpAddr::V4(_) => (32, 32),
        IpAddr::V6(_) => (128, 64),
    };
    let bits = bits.unwrap_or(max);
    if bits > max || bits == 0 {
        return None;
    }
    let bits = bits.min(keep);
    // Keep only the prefix, so that two spellings of one ban compare equal.
    let ip = match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    Some((ip, bits))
}

fn addr_target(addr: IpAddr, bits: u8) -> String {
    let full = matches!((addr, bits), (IpAddr::V4(_), 32) | (IpAddr::V6(_), 128));
    if full {
        format!("addr:{addr}")
    } else {
        format!("addr:{addr}/{bits}")
    }
}

/// How long until `expires`, for people to read: ` for 2 h more`, or nothing for never.
fn lasts(now: UnixMillis, expires: Option<UnixMillis>) -> String {
    expires
        .map(|at| {
            format!(
                " for {} more",
                crate::text::duration(at.saturating_sub(now))
            )
        })
        .unwrap_or_default()
}

/// Modes as IRC letters (`+itk`), for the log.
fn mode_letters(m: RoomModes) -> String {
    let letters: String = [
        (m.moderated, 'm'),
        (m.invite_only, 'i'),
        (m.topic_lock, 't'),
        (m.registered_only, 'R'),
        (m.secret, 's'),
        (m.key, 'k'),
    ]
    .into_iter()
    .filter_map(|(on, c)| on.then_some(c))
    .chain(m.limit.map(|_| 'l'))
    .collect();
    let open = if m.open { " (open: -n)" } else { "" };
    match (letters.is_empty(), m.limit) {
        (true, _) => format!("none{open}"),
        (false, Some(n)) => format!("+{letters} {n}{open}"),
        (false, None) => format!("+{letters}{open}"),
    }
}

fn with_reason(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

/// Longest room key, ban reason and name pattern accepted.
const MAX_KEY: usize = 64;
const MAX_REASON: usize = 300;
const MAX_PATTERN: usize = 64;

impl Hub {
    /// The wall clock for expiries, never going backwards.
    fn wall_now(&self) -> UnixMillis {
        self.last_ts.max(self.wall)
    }

    /// True when `conn` is logged in to an account the configuration names as an operator.
    pub(super) fn is_server_op(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            [c.account.as_deref(), c.oper.as_deref()]
                .into_iter()
                .flatten()
                .any(|a| self.operators.contains(a))
        })
    }

    /// An account's role in a room.
    fn account_role(&self, key: &str, account: &str) -> Role {
        let (Some(room), Some(acc)) = (self.rooms.get(key), self.accounts.get(account)) else {
            return Role::Member;
        };
        match room.settings.roles.get(account) {
            Some(grant) if grant.account == acc.created => grant.role,
            _ => Role::Member,
        }
    }

    /// A connection's role in a room: its account's, or the one it holds as a guest while in
    /// the room ([`Room::guest_roles`]).
    pub(super) fn role_of(&self, conn: ConnId, key: &str) -> Role {
        match self.conns.get(&conn).and_then(|c| c.account.as_deref()) {
            Some(a) => self.account_role(key, a),
            None => self
                .rooms
                .get(key)
                .and_then(|r| r.guest_roles.get(&conn).copied())
                .unwrap_or(Role::Member),
        }
    }

    fn power_of(&self, conn: ConnId, key: &str) -> u8 {
        if self.is_server_op(conn) {
            SERVER_OPERATOR
        } else {
            power(self.role_of(conn, key))
        }
    }

    fn rule_matches(&self, rule: &Rule, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            let name = c.name.as_deref().map(names::key);
            rule.matches(name.as_deref(), c.account.as_deref(), c.addr)
        })
    }

    /// True when a room's bans and mutes by name pattern or address pass `conn` by: its
    /// voiced members and above, and server operators, as IRC's ban exceptions would. A ban of
    /// an account holds whatever its role.
    fn exempt(&self, conn: ConnId, key: &str, rule: &Rule) -> bool {
        !matches!(rule, Rule::Account(_)) && self.power_of(conn, key) >= power(Role::Voice)
    }

    /// The live ban (or mute) of a room that matches `conn` under the name `name_key`.
    pub(super) fn room_ban(
        &self,
        key: &str,
        conn: ConnId,
        name_key: Option<&str>,
        mute: bool,
    ) -> Option<&Ban> {
        let now = self.wall_now();
        let c = self.conns.get(&conn)?;
        let own = c.name.as_deref().map(names::key);
        let name = name_key.or(own.as_deref());
        self.rooms.get(key)?.settings.bans.iter().find(|b| {
            b.info.mute == mute
                && b.live(now)
                && b.rule.matches(name, c.account.as_deref(), c.addr)
                && !self.exempt(conn, key, &b.rule)
        })
    }

    /// The live server-wide ban that matches `conn` (under `name_key`, or its own name).
    fn server_ban(&self, conn: ConnId, name_key: Option<&str>) -> Option<&Ban> {
        let now = self.wall_now();
        let c = self.conns.get(&conn)?;
        let own = c.name.as_deref().map(names::key);
        let name = name_key.or(own.as_deref());
        self.server_bans
            .iter()
            .find(|b| b.live(now) && b.rule.matches(name, c.account.as_deref(), c.addr))
    }

    /// Closes `conn` if a server-wide ban matches it. True when it did.
    pub(super) fn enforce_server_ban(&mut self, now: UnixMillis, conn: ConnId) -> bool {
        let Some(ban) = self.server_ban(conn, None) else {
            return false;
        };
        let wall = self.wall_now();
        let why = format!(
            "you are banned from this server{}{}",
            with_reason(&ban.info.reason),
            lasts(wall, ban.info.expires)
        );
        self.reply(conn, &error(ErrorCode::Banned, &why));
        self.kick(now, conn, "banned");
        true
    }

    /// Refuses a new name a ban of the server or of one of its rooms matches.
    pub(super) fn name_banned(&mut self, conn: ConnId, name: &str) -> bool {
        let key = names::key(name);
        if self.is_server_op(conn) {
            return false;
        }
        let room = self
            .conns
            .get(&conn)
            .map(|c| c.rooms.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|r| self.room_ban(r, conn, Some(&key), false).is_some());
        let why = if self.server_ban(conn, Some(&key)).is_some() {
            format!("{name} is banned from this server")
        } else if let Some(room) = room {
            format!("{name} is banned from {}", self.rooms[&room].name)
        } else {
            return false;
        };
        self.reply(conn, &error(ErrorCode::Banned, &why));
        true
    }

    /// Whether `conn` may join the room now (it is in memory), replying with the reason when
    /// not. Wrong keys are counted per room and address, and lock that address out of the
    /// key for a while as wrong passwords do ([`HubConfig::login_failures_per_account`]).
    pub(super) fn may_join(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        key: &str,
        given: Option<&Secret>,
    ) -> bool {
        let Some(addr) = self.conns.get(&conn).map(|c| c.addr) else {
            return false;
        };
        let pair = (key.to_string(), addr);
        let needs_key = || {
            matches!(
                self.join_refusal(conn, key, None),
                Some((ErrorCode::BadKey, _))
            )
        };
        if let Some(wait) = self.key_throttles.get(&pair).and_then(|t| t.wait(now))
            && needs_key()
        {
            let why = format!(
                "too many wrong keys for {} from your address; try again in {} s",
                self.rooms[key].name,
                wait.div_ceil(1000)
            );
            self.reply(conn, &error(ErrorCode::BadKey, &why));
            return false;
        }
        let refusal = self.join_refusal(conn, key, given);
        let limit = self.config.login_failures_per_account;
        if given.is_some() && limit > 0 && matches!(refusal, Some((ErrorCode::BadKey, _))) {
            if self.key_throttles.len() > 10_000 {
                self.key_throttles.retain(|_, t| !t.idle(now));
            }
            self.key_throttles.entry(pair).or_default().fail(now, limit);
        }
        match refusal {
            Some((code, why)) => {
                self.reply(conn, &error(code, &why));
                false
            }
            None => true,
        }
    }

    /// Why `conn` may not join the room now (it is in memory), if it may not. Bans stop
    /// everyone but server operators; invitations, roles and the account having been in the
    /// room already get past invite-only, the key and registered-only.
    fn join_refusal(
        &self,
        conn: ConnId,
        key: &str,
        given: Option<&Secret>,
    ) -> Option<(ErrorCode, String)> {
        if self.is_server_op(conn) {
            return None;
        }
        let now = self.wall_now();
        let room = &self.rooms[key];
        let shown = room.name.clone();
        if room.settings.modes.closed {
            Some((
                ErrorCode::RoomClosed,
                format!("{shown} was closed by the server's operators"),
            ))
        } else if let Some(ban) = self.room_ban(key, conn, None, false) {
            Some((
                ErrorCode::Banned,
                format!(
                    "you are banned from {shown}{}{}",
                    with_reason(&ban.info.reason),
                    lasts(now, ban.info.expires)
                ),
            ))
        } else {
            let c = &self.conns[&conn];
            let was_in = c
                .account
                .as_ref()
                .is_some_and(|a| self.accounts.get(a).is_some_and(|a| a.rooms.contains(key)));
            let invited = room
                .settings
                .invites
                .iter()
                .any(|i| i.expires.is_none_or(|e| e > now) && self.rule_matches(&i.rule, conn));
            let pass = was_in || invited || self.role_of(conn, key) >= Role::Op;
            let modes = room.settings.modes;
            if pass {
                None
            } else if modes.registered_only && c.account.is_none() {
                Some((
                    ErrorCode::RegisteredOnly,
                    format!("only people logged in to an account may join {shown}"),
                ))
            } else if modes
                .limit
                .is_some_and(|l| self.people_in(room) >= l as usize)
            {
                Some((
                    ErrorCode::RoomFull,
                    format!(
                        "{shown} is full (at most {} people)",
                        modes.limit.unwrap_or(0)
                    ),
                ))
            } else if modes.invite_only {
                Some((
                    ErrorCode::InviteOnly,
                    format!("{shown} is invite-only; ask one of its operators"),
                ))
            } else if room
                .settings
                .key
                .as_deref()
                .is_some_and(|k| given.map(Secret::expose) != Some(k))
            {
                Some((
                    ErrorCode::BadKey,
                    format!("{shown} needs a key to join (/join {shown} KEY)"),
                ))
            } else {
                None
            }
        }
    }

    /// Whether `conn` may read a room in memory (its history, members, topic, modes, bans,
    /// and its place in the room list): members and server operators may; anyone else only
    /// when the room is not secret and they could join it right now, without a key.
    pub(super) fn may_read(&self, conn: ConnId, key: &str) -> bool {
        let Some(room) = self.rooms.get(key) else {
            return false;
        };
        room.members.contains(&conn)
            || self.is_server_op(conn)
            || (!room.settings.modes.secret && self.join_refusal(conn, key, None).is_none())
    }

    /// Whether `conn` may learn that someone is in the room `key` (`whois`, `people`): when it
    /// may read the room ([`Hub::may_read`]): a room's existence is told to those it is open
    /// to, as its place in the room list is.
    pub(super) fn may_see_membership(&self, conn: ConnId, key: &str) -> bool {
        self.may_read(conn, key)
    }

    /// The room `raw` names, when `conn` may read it (see [`Hub::may_read`]); else replies
    /// why not. A secret room is answered as if it did not exist.
    pub(super) fn readable_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        let (key, name) = self.existing_room(conn, raw)?;
        if self.may_read(conn, &key) {
            return Some((key, name));
        }
        let room = &self.rooms[&key];
        let (code, why) = if room.settings.modes.secret {
            (ErrorCode::NoSuchRoom, format!("there is no room {name}"))
        } else {
            let why = self
                .join_refusal(conn, &key, None)
                .map_or_else(String::new, |(_, why)| format!(": {why}"));
            (
                ErrorCode::NotInRoom,
                format!("you are not in {}{why}", room.name),
            )
        };
        self.reply(conn, &error(code, &why));
        None
    }

    /// Whether `conn` may speak in a room it is in, replying with the reason when not.
    pub(super) fn may_speak(&mut self, conn: ConnId, key: &str) -> bool {
        match self.speak_refusal(conn, key) {
            Some(why) => {
                self.reply(conn, &error(ErrorCode::CannotSpeak, &why));
                false
            }
            None => true,
        }
    }

    /// Why `conn` may not speak in a room it is in (muted, or moderated without voice).
    fn speak_refusal(&self, conn: ConnId, key: &str) -> Option<String> {
        // The common case, on every message: nothing in the room can stop anyone speaking.
        let settings = &self.rooms.get(key)?.settings;
        if !settings.modes.moderated && !settings.bans.iter().any(|b| b.info.mute) {
            return None;
        }
        if self.power_of(conn, key) >= power(Role::Voice) {
            return None;
        }
        let shown = &self.rooms[key].name;
        if self.rooms[key].settings.modes.moderated {
            Some(format!("{shown} is moderated: only voiced members speak"))
        } else {
            self.room_ban(key, conn, None, true).map(|ban| {
                format!(
                    "you are muted in {shown}{}{}",
                    with_reason(&ban.info.reason),
                    lasts(self.wall_now(), ban.info.expires)
                )
            })
        }
    }

    /// A room `conn` (or another device of its name) is in where it may not speak, if any:
    /// while so, what it says to every room at once (away and quit reasons, a new name)
    /// carries no text of its own.
    pub(super) fn silenced_in(&self, conn: ConnId) -> Option<String> {
        let mut devices = self.other_devices(conn);
        devices.push(conn);
        devices.iter().find_map(|d| {
            let c = self.conns.get(d)?;
            c.rooms
                .iter()
                .find(|key| self.speak_refusal(*d, key).is_some())
                .map(|key| self.rooms[key].name.clone())
        })
    }

    /// Whether `conn` may not speak in this room.
    pub(super) fn silenced_in_room(&self, conn: ConnId, key: &str) -> bool {
        self.speak_refusal(conn, key).is_some()
    }

    /// Whether `conn` may set the topic of a room it is in.
    pub(super) fn may_set_topic(&mut self, conn: ConnId, key: &str) -> bool {
        if self.rooms[key].settings.modes.topic_lock && self.power_of(conn, key) < power(Role::Op) {
            let why = format!(
                "the topic of {} is locked: only its operators set it",
                self.rooms[key].name
            );
            self.reply(conn, &error(ErrorCode::NotPermitted, &why));
            return false;
        }
        self.may_speak(conn, key)
    }

    /// Whether a new room may be made by `conn` (guests and accounts have limits).
    pub(super) fn may_create(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        if self.is_server_op(conn) {
            return true;
        }
        let refusal = match &c.account {
            None if self.config.max_rooms_per_guest > 0
                && c.rooms_created >= self.config.max_rooms_per_guest =>
            {
                Some((
                    ErrorCode::AccountRequired,
                    format!(
                        "a guest may create {} rooms; register an account to create more",
                        self.config.max_rooms_per_guest
                    ),
                ))
            }
            Some(a)
                if self.config.max_owned_rooms > 0
                    && self.accounts[a].owned.len() >= self.config.max_owned_rooms =>
            {
                Some((
                    ErrorCode::OwnedRoomLimit,
                    format!(
                        "you own {} rooms, the most an account may; give one away first",
                        self.config.max_owned_rooms
                    ),
                ))
            }
            _ => None,
        };
        match refusal {
            Some((code, why)) => {
                self.reply(conn, &error(code, &why));
                false
            }
            None => true,
        }
    }

    /// A room was just made by `conn`: an account owns it (its topic locked, as IRC users
    /// expect of a registered channel); a guest has made one more.
    pub(super) fn created_room(&mut self, conn: ConnId, key: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.account.clone() {
            None => {
                c.rooms_created += 1;
                // Its operator while it stays, as IRC makes a channel's creator.
                if let Some(room) = self.rooms.get_mut(key) {
                    room.guest_roles.insert(conn, Role::Op);
                }
            }
            Some(account) => {
                if let Some(room) = self.rooms.get_mut(key) {
                    room.settings.modes.topic_lock = true;
                }
                self.grant(key, &account, Role::Owner);
            }
        }
    }

    /// An account joining a room with nobody in it and no owner takes it over, as the first
    /// account to create it would: the room was made by a guest, or its owner's account is gone.
    pub(super) fn claim_room(&mut self, conn: ConnId, key: &str) -> bool {
        let Some(account) = self.logged_in(conn) else {
            return false;
        };
        let Some(room) = self.rooms.get(key) else {
            return false;
        };
        let owned = room
            .settings
            .roles
            .keys()
            .any(|a| self.account_role(key, a) == Role::Owner);
        let full = self.config.max_owned_rooms > 0
            && self.accounts[&account].owned.len() >= self.config.max_owned_rooms;
        if owned || full || !room.members.is_empty() || key == names::key(&self.config.default_room)
        {
            return false;
        }
        self.grant(key, &account, Role::Owner);
        true
    }

    /// Gives `account` a role in a room (Member takes it away), and keeps the account's list of
    /// owned rooms. Stores both.
    fn grant(&mut self, key: &str, account: &str, role: Role) {
        let Some(created) = self.accounts.get(account).map(|a| a.created) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if role == Role::Member {
            room.settings.roles.remove(account);
        } else {
            room.settings.roles.insert(
                account.to_string(),
                Grant {
                    role,
                    account: created,
                },
            );
        }
        let acc = self.accounts.get_mut(account).expect("checked above");
        let changed = if role == Role::Owner {
            acc.owned.insert(key.to_string())
        } else {
            acc.owned.shift_remove(key)
        };
        if changed {
            self.store_account_rooms(account);
        }
        self.store_room_settings(key);
    }

    /// A role for a guest in the room, while they stay in it: operator or voice (ownership
    /// is an account's), given by someone above them, never above the giver.
    fn guest_role(&mut self, conn: ConnId, key: &str, name: &str, role: Role, at_least: bool) {
        let shown = self.rooms[key].name.clone();
        let target = self
            .names
            .get(&names::key(name))
            .and_then(|c| c.first().copied())
            .filter(|t| self.rooms[key].members.contains(t));
        let Some(target) = target else {
            let err = if self.names.contains_key(&names::key(name)) {
                let why =
                    format!("{name} is not in {shown} (a guest's role lasts while they are in it)");
                error(ErrorCode::NotThere, &why)
            } else {
                let why =
                    format!("nobody called {name} is connected, and no account has that name");
                error(ErrorCode::NoSuchUser, &why)
            };
            self.reply(conn, &err);
            return;
        };
        if role == Role::Owner {
            let why = format!("an owner is a registered account, and {name} is a guest");
            self.reply(conn, &error(ErrorCode::AccountRequired, &why));
            return;
        }
        if at_least && self.role_of(target, key) >= role {
            return;
        }
        let mine = self.power_of(conn, key);
        let theirs = power(self.role_of(target, key));
        let allowed = if target == conn {
            power(role) <= theirs
        } else {
            theirs < mine && power(role) <= mine
        };
        if !allowed {
            let why = format!("you may give roles up to your own, to people below you in {shown}");
            self.reply(conn, &error(ErrorCode::NotPermitted, &why));
            return;
        }
        let before = self.role_of(target, key);
        if before == role {
            // Given already: nothing changes, nothing to tell.
            return;
        }
        let room = self.rooms.get_mut(key).expect("checked");
        if role == Role::Member {
            room.guest_roles.remove(&target);
        } else {
            room.guest_roles.insert(target, role);
        }
        let mut to: Vec<ConnId> = room.members.iter().copied().collect();
        if !to.contains(&conn) {
            to.push(conn);
        }
        let by = self.name_of(conn);
        let ts = self.stamp();
        let msg = ServerMsg::Role {
            room: shown.clone(),
            name: self.name_of(target),
            role,
            before: Some(before),
            by: Some(by.clone()),
            ts,
        };
        self.send(to, &msg);
        self.audit(conn, format!("made the guest {name} {role:?} in {shown}"));
    }

    /// Hands a room's settings to the store.
    pub(super) fn store_room_settings(&mut self, key: &str) {
        if !self.config.durable {
            return;
        }
        let id = self.take_id();
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        self.outputs.push_back(Output::Store(Record::RoomSettings {
            id,
            room: room.name.clone(),
            settings: room.settings.clone(),
        }));
    }

    fn store_server_bans(&mut self) {
        if !self.config.durable {
            return;
        }
        let id = self.take_id();
        self.outputs.push_back(Output::Store(Record::ServerBans {
            id,
            bans: self.server_bans.clone(),
        }));
    }

    /// Loads the server-wide bans back from the store.
    pub fn restore_server_bans(&mut self, bans: Vec<Ban>) {
        self.server_bans = bans;
    }

    /// The server-wide bans in force.
    pub fn server_bans(&self) -> &[Ban] {
        &self.server_bans
    }

    /// Who `conn` is, for the audit log.
    fn actor(&self, conn: ConnId) -> String {
        let name = self.name_of(conn);
        match self.logged_in(conn) {
            Some(a) => format!("{name} (account {}, {conn})", self.accounts[&a].name),
            None => format!("{name} (guest, {conn})"),
        }
    }

    pub(super) fn audit(&mut self, conn: ConnId, action: String) {
        let actor = self.actor(conn);
        self.outputs.push_back(Output::Audit {
            conn,
            text: format!("{actor} {action}"),
        });
    }

    /// The room a moderation command is about, if `conn` may moderate it: the room exists
    /// (loaded from the store first if need be: the command then runs again), `conn` is in it
    /// or a server operator, and its power is at least `need`. Replies otherwise.
    fn moderated_room(
        &mut self,
        conn: ConnId,
        raw: &str,
        need: Role,
        again: &ClientMsg,
    ) -> Option<String> {
        let (key, name) = self.valid_room(conn, raw)?;
        if !self.rooms.contains_key(&key) {
            if self.config.durable && !self.absent.contains(&key) {
                self.wait_for_room(conn, &key, again.clone());
                return None;
            }
            self.reply(
                conn,
                &error(ErrorCode::NoSuchRoom, &format!("there is no room {name}")),
            );
            return None;
        }
        let name = self.rooms[&key].name.clone();
        let server_op = self.is_server_op(conn);
        let member = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.rooms.contains(&key));
        if !member && !server_op {
            self.reply(
                conn,
                &error(ErrorCode::NotInRoom, &format!("you are not in {name}")),
            );
            return None;
        }
        if self.power_of(conn, &key) < power(need) {
            let what = if need == Role::Owner {
                "an owner"
            } else {
                "an operator"
            };
            self.reply(
                conn,
                &error(
                    ErrorCode::NotPermitted,
                    &format!("you need to be {what} of {name} for that"),
                ),
            );
            return None;
        }
        Some(key)
    }

    /// Parses a ban target. A bare name is the account of that name, else the address of the
    /// guest using it, else that exact name. Replies when it cannot be parsed.
    fn parse_target(&mut self, conn: ConnId, raw: &str) -> Option<(Rule, String)> {
        let raw = raw.trim();
        let bad = |hub: &mut Self, why: &str| {
            hub.reply(
                conn,
                &error(
                    ErrorCode::InvalidName,
                    &format!(
                        "{why}; a target is account:NAME, name:PATTERN, addr:IP[/BITS] or a name"
                    ),
                ),
            );
            None
        };
        if let Some(account) = raw.strip_prefix("account:") {
            let Ok(name) = names::normalize_name(account) else {
                return bad(self, &format!("{account:?} is not a valid account name"));
            };
            let key = names::key(&name);
            let shown = self.accounts.get(&key).map_or(name, |a| a.name.clone());
            return Some((Rule::Account(key), format!("account:{shown}")));
        }
        if let Some(pattern) = raw.strip_prefix("name:") {
            let valid = !pattern.is_empty()
                && pattern.len() <= MAX_PATTERN
                && !pattern.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return bad(self, "a name pattern is 1 to 64 bytes without spaces");
            }
            return Some((Rule::Name(names::key(pattern)), format!("name:{pattern}")));
        }
        if let Some(addr) = raw.strip_prefix("addr:") {
            let Some((addr, bits)) = parse_addr(addr) else {
                return bad(self, &format!("{addr:?} is not an address or prefix"));
            };
            return Some((Rule::Addr { addr, bits }, addr_target(addr, bits)));
        }
        let raw = raw.strip_prefix("guest:").unwrap_or(raw);
        let Ok(name) = names::normalize_name(raw) else {
            return bad(self, &format!("{raw:?} is not a valid name"));
        };
        let key = names::key(&name);
        if let Some(account) = self.accounts.get(&key) {
            return Some((Rule::Account(key), format!("account:{}", account.name)));
        }
        if let Some(&guest) = self.names.get(&key).and_then(|c| c.first()) {
            let addr = self.conns[&guest].addr;
            let bits = if addr.is_ipv4() { 32 } else { 64 };
            return Some((Rule::Addr { addr, bits }, format!("guest:{name}")));
        }
        Some((Rule::Name(key), format!("name:{name}")))
    }

    /// Registered connections a rule matches, optionally only those in a room.
    fn matching(&self, rule: &Rule, room: Option<&str>) -> Vec<ConnId> {
        let mut found: Vec<ConnId> = match room {
            Some(key) => self.rooms[key].members.iter().copied().collect(),
            None => self
                .conns
                .iter()
                .filter(|(_, c)| c.name.is_some())
                .map(|(id, _)| *id)
                .collect(),
        };
        found.retain(|&c| {
            self.rule_matches(rule, c) && room.is_none_or(|k| !self.exempt(c, k, rule))
        });
        found.sort_unstable();
        found
    }

    /// Refuses when someone a rule matches has at least the power of `conn`.
    fn protects(&mut self, conn: ConnId, key: Option<&str>, rule: &Rule) -> bool {
        let mine = match key {
            Some(k) => self.power_of(conn, k),
            None => SERVER_OPERATOR,
        };
        let covered = match (key, rule) {
            (Some(k), Rule::Account(a)) if self.accounts.contains_key(a) => {
                Some(self.accounts[a].name.clone()).filter(|_| {
                    let theirs = if self.operators.contains(a) {
                        SERVER_OPERATOR
                    } else {
                        power(self.account_role(k, a))
                    };
                    theirs >= mine
                })
            }
            _ => None,
        };
        let operator_account = match rule {
            Rule::Account(a) if key.is_none() && self.operators.contains(a) => Some(
                self.accounts
                    .get(a)
                    .map_or_else(|| a.clone(), |acc| acc.name.clone()),
            ),
            _ => None,
        };
        // A server ban never takes in an operator, the one setting it included. (In a room,
        // those a pattern or address would take in and whose role is not below the setter's
        // are exempt from it, so they need no protecting.)
        let covered = covered.or(operator_account).or_else(|| {
            self.matching(rule, key)
                .into_iter()
                .find(|&c| match key {
                    Some(k) => self.power_of(c, k) >= mine,
                    None => self.is_server_op(c),
                })
                .map(|c| self.name_of(c))
        });
        let Some(name) = covered else {
            return false;
        };
        let why = match key {
            Some(_) => format!("that would take in {name}, whose role is not below yours"),
            None => format!(
                "that would take in {name}, a server operator; ban a narrower target \
                 (account:NAME, name:PATTERN)"
            ),
        };
        self.reply(conn, &error(ErrorCode::NotPermitted, &why));
        true
    }

    pub(super) fn valid_reason(
        &mut self,
        conn: ConnId,
        reason: Option<String>,
    ) -> Result<Option<String>, ()> {
        let reason = reason.filter(|r| !r.trim().is_empty());
        // No control characters: reasons go to the audit log as they are, and a log read in a
        // terminal must not be steered by one.
        if reason
            .as_ref()
            .is_some_and(|r| r.len() > MAX_REASON || r.chars().any(char::is_control))
        {
            self.reply(
                conn,
                &error(
                    ErrorCode::TextTooLong,
                    &format!(
                        "a reason is one line of at most {MAX_REASON} bytes, without control \
                         characters"
                    ),
                ),
            );
            return Err(());
        }
        Ok(reason)
    }

    /// Takes connections out of a room after a kick, ban or closing (already announced).
    fn remove_from_room(&mut self, now: UnixMillis, key: &str, gone: &[ConnId]) {
        for &conn in gone {
            self.account_room(conn, key, false);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.rooms.shift_remove(key);
            }
            self.leave_room(now, key, conn);
        }
    }

    /// Announces that `names` were removed from a room, and removes every device of theirs.
    fn kick_out(
        &mut self,
        now: UnixMillis,
        key: &str,
        gone: Vec<ConnId>,
        by: &str,
        reason: Option<String>,
    ) {
        let mut shown: Vec<String> = gone.iter().map(|&c| self.name_of(c)).collect();
        shown.dedup();
        let members: Vec<ConnId> = self.rooms[key].members.iter().copied().collect();
        for name in shown {
            let ts = self.stamp();
            let msg = ServerMsg::Kick {
                room: self.rooms[key].name.clone(),
                name,
                by: by.to_string(),
                reason: reason.clone(),
                ts,
            };
            self.send(members.clone(), &msg);
        }
        self.remove_from_room(now, key, &gone);
    }

    pub(super) fn cmd_kick(&mut self, now: UnixMillis, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::Kick { room, name, reason } = &msg else {
            return;
        };
        let Some(key) = self.moderated_room(conn, room, Role::Op, &msg) else {
            return;
        };
        let Ok(reason) = self.valid_reason(conn, reason.clone()) else {
            return;
        };
        let target = names::key(name);
        let gone: Vec<ConnId> = self
            .names
            .get(&target)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| self.rooms[&key].members.contains(c))
            .collect();
        let shown = self.rooms[&key].name.clone();
        let Some(&first) = gone.first() else {
            self.reply(
                conn,
                &error(ErrorCode::NotThere, &format!("{name} is not in {shown}")),
            );
            return;
        };
        // An operator may remove another operator, as on IRC; an owner is removed only by
        // someone above them (a server operator).
        let (theirs, mine) = (self.power_of(first, &key), self.power_of(conn, &key));
        let above = if theirs == power(Role::Op) {
            theirs > mine
        } else {
            theirs >= mine
        };
        if first != conn && above {
            let who = self.name_of(first);
            self.reply(
                conn,
                &error(
                    ErrorCode::NotPermitted,
                    &format!("{who}'s role in {shown} is not below yours"),
                ),
            );
            return;
        }
        let who = self.name_of(first);
        self.audit(
            conn,
            format!("kicked {who} from {shown}{}", with_reason(&reason)),
        );
        let by = self.name_of(conn);
        self.kick_out(now, &key, gone, &by, reason);
    }

    pub(super) fn cmd_ban(&mut self, now: UnixMillis, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::Ban {
            room,
            target,
            duration,
            reason,
            mute,
        } = &msg
        else {
            return;
        };
        let mute = *mute;
        let Some(key) = self.moderated_room(conn, room, Role::Op, &msg) else {
            return;
        };
        let Ok(reason) = self.valid_reason(conn, reason.clone()) else {
            return;
        };
        let Some((rule, shown_target)) = self.parse_target(conn, target) else {
            return;
        };
        if self.protects(conn, Some(&key), &rule) {
            return;
        }
        let wall = self.wall_now();
        let room_name = self.rooms[&key].name.clone();
        let bans = &mut self.rooms.get_mut(&key).expect("checked").settings.bans;
        bans.retain(|b| b.live(wall) && !(b.info.mute == mute && b.info.target == shown_target));
        if bans.len() >= self.config.max_list {
            let why = format!(
                "{room_name} has {} bans and mutes, the most a room may; lift some first",
                self.config.max_list
            );
            self.reply(conn, &error(ErrorCode::ListFull, &why));
            return;
        }
        let by = self.name_of(conn);
        let info = BanInfo {
            target: shown_target.clone(),
            mute,
            by: by.clone(),
            reason: reason.clone(),
            ts: self.stamp(),
            expires: duration
                .filter(|&d| d > 0)
                .map(|d| wall.saturating_add(d.saturating_mul(1000))),
        };
        let room = self.rooms.get_mut(&key).expect("checked");
        room.settings.bans.push(Ban {
            rule: rule.clone(),
            info: info.clone(),
        });
        let members: Vec<ConnId> = room.members.iter().copied().collect();
        self.send(
            members,
            &ServerMsg::Ban {
                room: Some(room_name.clone()),
                ban: info.clone(),
            },
        );
        let what = if mute { "muted" } else { "banned" };
        self.audit(
            conn,
            format!(
                "{what} {shown_target} in {room_name}{}{}",
                with_reason(&reason),
                lasts(wall, info.expires)
            ),
        );
        if !mute {
            let mut gone = self.matching(&rule, Some(&key));
            // Every device of an account the ban matches goes, whatever it matched on.
            let extra: Vec<ConnId> = gone
                .iter()
                .flat_map(|&c| self.other_devices(c))
                .filter(|d| self.rooms[&key].members.contains(d))
                .collect();
            gone.extend(extra);
            gone.sort_unstable();
            gone.dedup();
            if !gone.is_empty() {
                let why = Some(match &reason {
                    Some(r) => format!("banned: {r}"),
                    None => "banned".to_string(),
                });
                self.kick_out(now, &key, gone, &by, why);
            }
        }
        self.store_room_settings(&key);
    }

    /// Finds a listed ban by its target as shown, or by a bare name resolved as for `ban`.
    fn find_ban(&mut self, conn: ConnId, bans: &[Ban], raw: &str, mute: bool) -> Option<usize> {
        let raw = raw.trim();
        let position = |shown: &str| {
            bans.iter()
                .position(|b| b.info.mute == mute && b.info.target == shown)
        };
        if let Some(i) = position(raw) {
            return Some(i);
        }
        let (_, shown) = self.parse_target(conn, raw)?;
        position(&shown).or_else(|| {
            // A guest's ban outlives the guest's name: try the forms a bare name may have had.
            ["guest:", "name:", "account:"]
                .iter()
                .find_map(|p| position(&format!("{p}{raw}")))
        })
    }

    pub(super) fn cmd_unban(&mut self, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::Unban { room, target, mute } = &msg else {
            return;
        };
        let mute = *mute;
        let Some(key) = self.moderated_room(conn, room, Role::Op, &msg) else {
            return;
        };
        let wall = self.wall_now();
        let mut bans =
            std::mem::take(&mut self.rooms.get_mut(&key).expect("checked").settings.bans);
        bans.retain(|b| b.live(wall));
        let found = self.find_ban(conn, &bans, target, mute);
        let lifted = found.map(|i| bans.remove(i));
        let room = self.rooms.get_mut(&key).expect("checked");
        room.settings.bans = bans;
        let room_name = room.name.clone();
        let Some(lifted) = lifted else {
            let what = if mute { "mute" } else { "ban" };
            self.reply(
                conn,
                &error(
                    ErrorCode::NoSuchBan,
                    &format!("{room_name} has no {what} of {target}; /bans lists them"),
                ),
            );
            return;
        };
        let members: Vec<ConnId> = self.rooms[&key].members.iter().copied().collect();
        let by = self.name_of(conn);
        let ts = self.stamp();
        let msg = ServerMsg::Unban {
            room: Some(room_name.clone()),
            target: lifted.info.target.clone(),
            mute,
            by,
            ts,
        };
        // The one who lifted it hears of it even from outside the room (a server operator).
        let mut to = members;
        if !to.contains(&conn) {
            to.push(conn);
        }
        self.send(to, &msg);
        let what = if mute { "unmuted" } else { "unbanned" };
        self.audit(
            conn,
            format!("{what} {} in {room_name}", lifted.info.target),
        );
        self.store_room_settings(&key);
    }

    pub(super) fn cmd_bans(&mut self, conn: ConnId, raw: &str, after: Option<u32>) {
        let Some((key, _)) = self.readable_room(conn, raw) else {
            return;
        };
        let wall = self.wall_now();
        let room = &self.rooms[&key];
        let bans: Vec<BanInfo> = room
            .settings
            .bans
            .iter()
            .filter(|b| b.live(wall))
            .map(|b| b.info.clone())
            .collect();
        let name = room.name.clone();
        self.reply_bans(conn, Some(name), bans, after);
    }

    /// Sends as much of a ban list as fits in a line, from entry `after`.
    fn reply_bans(
        &mut self,
        conn: ConnId,
        room: Option<String>,
        bans: Vec<BanInfo>,
        after: Option<u32>,
    ) {
        let budget = self
            .config
            .max_line
            .saturating_sub(128 + room.as_ref().map_or(0, String::len))
            .max(1);
        let skip = after.unwrap_or(0) as usize;
        // Measured as encoded, escapes included: a reason may hold characters JSON escapes.
        let (bans, more) = fit_by_size(bans.into_iter().skip(skip), budget, |b| {
            serde_json::to_string(b).map_or(budget, |s| s.len() + 1)
        });
        let msg = ServerMsg::BanList {
            room,
            bans,
            more,
            after,
        };
        self.reply(conn, &msg);
    }

    pub(super) fn cmd_role(&mut self, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::Role {
            room,
            name,
            role,
            at_least,
        } = &msg
        else {
            return;
        };
        let role = *role;
        let Some(key) = self.moderated_room(conn, room, Role::Op, &msg) else {
            return;
        };
        let shown = self.rooms[&key].name.clone();
        let account = names::key(name);
        let Some(account_name) = self.accounts.get(&account).map(|a| a.name.clone()) else {
            self.guest_role(conn, &key, name, role, *at_least);
            return;
        };
        if *at_least && self.account_role(&key, &account) >= role {
            return;
        }
        let mine = self.power_of(conn, &key);
        let theirs = power(self.account_role(&key, &account));
        let own = self.logged_in(conn).as_deref() == Some(account.as_str());
        let allowed = if own {
            power(role) <= theirs.max(mine.min(power(Role::Owner)))
        } else {
            theirs < mine && power(role) <= mine
        };
        if !allowed {
            self.reply(
                conn,
                &error(
                    ErrorCode::NotPermitted,
                    &format!("you may give roles up to your own, to people below you in {shown}"),
                ),
            );
            return;
        }
        let owners = self.rooms[&key]
            .settings
            .roles
            .keys()
            .filter(|a| self.account_role(&key, a) == Role::Owner)
            .count();
        if own && theirs == power(Role::Owner) && role != Role::Owner && owners == 1 {
            self.reply(
                conn,
                &error(
                    ErrorCode::NotPermitted,
                    &format!("{shown} keeps an owner: make someone else owner first"),
                ),
            );
            return;
        }
        let new_grant =
            role != Role::Member && !self.rooms[&key].settings.roles.contains_key(&account);
        if new_grant && self.rooms[&key].settings.roles.len() >= self.config.max_list {
            let why = format!(
                "{shown} has {} roles given, the most a room may",
                self.config.max_list
            );
            self.reply(conn, &error(ErrorCode::ListFull, &why));
            return;
        }
        let before = self.account_role(&key, &account);
        if before == role {
            // Given already: nothing changes, nothing to tell.
            return;
        }
        self.grant(&key, &account, role);
        let members: Vec<ConnId> = self.rooms[&key].members.iter().copied().collect();
        let by = self.name_of(conn);
        let ts = self.stamp();
        let mut to = members;
        if !to.contains(&conn) {
            to.push(conn);
        }
        self.send(
            to,
            &ServerMsg::Role {
                room: shown.clone(),
                name: account_name.clone(),
                role,
                before: Some(before),
                by: Some(by),
                ts,
            },
        );
        let what = match role {
            Role::Member => format!("took {account_name}'s role in {shown} away"),
            role => format!("made {account_name} {} of {shown}", role.as_str()),
        };
        self.audit(conn, what);
    }

    pub(super) fn cmd_mode(&mut self, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::Mode {
            room,
            moderated,
            invite_only,
            topic_lock,
            registered_only,
            secret,
            key: room_key,
            limit,
            open,
        } = &msg
        else {
            return;
        };
        let query = moderated.is_none()
            && invite_only.is_none()
            && topic_lock.is_none()
            && registered_only.is_none()
            && secret.is_none()
            && room_key.is_none()
            && limit.is_none()
            && open.is_none();
        if query {
            let Some((key, _)) = self.readable_room(conn, room) else {
                return;
            };
            let room = &self.rooms[&key];
            let msg = ServerMsg::Mode {
                room: room.name.clone(),
                modes: room.settings.modes(),
                before: None,
                created: Some(room.created),
                by: None,
                ts: None,
            };
            self.reply(conn, &msg);
            return;
        }
        let Some(key) = self.moderated_room(conn, room, Role::Op, &msg) else {
            return;
        };
        let new_key = room_key.as_ref().map(|k| k.expose().to_string());
        if new_key.as_ref().is_some_and(|k| {
            k.len() > MAX_KEY || k.chars().any(|c| c.is_whitespace() || c.is_control())
        }) {
            self.reply(
                conn,
                &error(
                    ErrorCode::Malformed,
                    &format!("a room key is at most {MAX_KEY} bytes without spaces"),
                ),
            );
            return;
        }
        let r = self.rooms.get_mut(&key).expect("checked");
        let before = r.settings.modes();
        let before_key = r.settings.key.clone();
        let m = &mut r.settings.modes;
        if let Some(limit) = limit {
            m.limit = (*limit > 0).then_some(*limit);
        }
        m.moderated = moderated.unwrap_or(m.moderated);
        m.invite_only = invite_only.unwrap_or(m.invite_only);
        m.topic_lock = topic_lock.unwrap_or(m.topic_lock);
        m.registered_only = registered_only.unwrap_or(m.registered_only);
        m.secret = secret.unwrap_or(m.secret);
        m.open = open.unwrap_or(m.open);
        if let Some(k) = new_key {
            r.settings.key = Some(k).filter(|k| !k.is_empty());
        }
        let modes = r.settings.modes();
        if modes == before && r.settings.key.as_deref() == before_key.as_deref() {
            // Nothing changed (a mode set again): nothing to tell, as IRC servers do.
            return;
        }
        let shown = r.name.clone();
        let mut to: Vec<ConnId> = r.members.iter().copied().collect();
        if !to.contains(&conn) {
            to.push(conn);
        }
        let by = self.name_of(conn);
        let ts = self.stamp();
        self.send(
            to,
            &ServerMsg::Mode {
                room: shown.clone(),
                modes,
                before: Some(before),
                created: None,
                by: Some(by),
                ts: Some(ts),
            },
        );
        self.audit(
            conn,
            format!("set the modes of {shown} to {}", mode_letters(modes)),
        );
        self.store_room_settings(&key);
    }

    pub(super) fn cmd_invite(&mut self, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::Invite {
            room,
            name,
            duration,
        } = &msg
        else {
            return;
        };
        let Some(key) = self.moderated_room(conn, room, Role::Op, &msg) else {
            return;
        };
        let target = names::key(name);
        let (rule, invitee) = if let Some(account) = self.accounts.get(&target) {
            (Rule::Account(target.clone()), account.name.clone())
        } else if let Some(&guest) = self.names.get(&target).and_then(|c| c.first()) {
            let addr = self.conns[&guest].addr;
            let rule = Rule::Guest {
                name: target.clone(),
                addr,
            };
            (rule, self.name_of(guest))
        } else {
            self.reply(
                conn,
                &error(
                    ErrorCode::NoSuchUser,
                    &format!("nobody called {name} is here, and no account has that name"),
                ),
            );
            return;
        };
        let inside = self
            .names
            .get(&target)
            .is_some_and(|devices| devices.iter().any(|d| self.rooms[&key].members.contains(d)));
        if inside {
            let shown = self.rooms[&key].name.clone();
            let why = format!("{invitee} is in {shown} already");
            self.reply(conn, &error(ErrorCode::AlreadyInRoom, &why));
            return;
        }
        let wall = self.wall_now();
        let lasts_ms = match duration {
            Some(0) => None,
            Some(d) => Some(d.saturating_mul(1000)),
            None => Some(self.config.invite_expiry).filter(|&e| e > 0),
        };
        let expires = lasts_ms.map(|ms| wall.saturating_add(ms));
        let max = self.config.max_list;
        let r = self.rooms.get_mut(&key).expect("checked");
        r.settings
            .invites
            .retain(|i| i.expires.is_none_or(|e| e > wall) && i.rule != rule);
        if r.settings.invites.len() >= max {
            let why = format!("{} has {max} invitations out, the most a room may", r.name);
            self.reply(conn, &error(ErrorCode::ListFull, &why));
            return;
        }
        r.settings.invites.push(Invitation { rule, expires });
        let shown = r.name.clone();
        let mut to: Vec<ConnId> = self.names.get(&target).cloned().unwrap_or_default();
        if !to.contains(&conn) {
            to.push(conn);
        }
        let by = self.name_of(conn);
        self.send(
            to,
            &ServerMsg::Invite {
                room: shown,
                name: invitee,
                by,
                expires,
            },
        );
        self.store_room_settings(&key);
    }

    /// Refuses a server-operator command to anyone else. True when `conn` is one.
    fn require_server_op(&mut self, conn: ConnId) -> bool {
        if self.is_server_op(conn) {
            return true;
        }
        self.reply(
            conn,
            &error(
                ErrorCode::NotPermitted,
                "only the server's operators may do that",
            ),
        );
        false
    }

    pub(super) fn cmd_kill(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        name: &str,
        reason: Option<String>,
    ) {
        if !self.require_server_op(conn) {
            return;
        }
        let Ok(reason) = self.valid_reason(conn, reason) else {
            return;
        };
        let targets = self
            .names
            .get(&names::key(name))
            .cloned()
            .unwrap_or_default();
        if targets.is_empty() {
            self.reply(
                conn,
                &error(
                    ErrorCode::NoSuchUser,
                    &format!("nobody called {name} is connected"),
                ),
            );
            return;
        }
        let by = self.name_of(conn);
        let why = format!("killed by {by}{}", with_reason(&reason));
        let shown = self.name_of(targets[0]);
        self.audit(conn, format!("killed {shown}{}", with_reason(&reason)));
        for target in targets {
            self.kick(now, target, &why);
        }
    }

    pub(super) fn cmd_server_ban(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        target: &str,
        duration: Option<u64>,
        reason: Option<String>,
    ) {
        if !self.require_server_op(conn) {
            return;
        }
        let Ok(reason) = self.valid_reason(conn, reason) else {
            return;
        };
        let Some((rule, shown)) = self.parse_target(conn, target) else {
            return;
        };
        if self.protects(conn, None, &rule) {
            return;
        }
        let wall = self.wall_now();
        self.server_bans
            .retain(|b| b.live(wall) && b.info.target != shown);
        if self.server_bans.len() >= self.config.max_list {
            let why = format!(
                "the server has {} bans, the most it keeps; lift some first",
                self.config.max_list
            );
            self.reply(conn, &error(ErrorCode::ListFull, &why));
            return;
        }
        let info = BanInfo {
            target: shown.clone(),
            mute: false,
            by: self.name_of(conn),
            reason: reason.clone(),
            ts: self.stamp(),
            expires: duration
                .filter(|&d| d > 0)
                .map(|d| wall.saturating_add(d.saturating_mul(1000))),
        };
        let gone = self.matching(&rule, None);
        self.server_bans.push(Ban {
            rule,
            info: info.clone(),
        });
        self.audit(
            conn,
            format!(
                "banned {shown} from the server{}{}",
                with_reason(&reason),
                lasts(wall, info.expires)
            ),
        );
        self.reply(
            conn,
            &ServerMsg::Ban {
                room: None,
                ban: info,
            },
        );
        for target in gone {
            self.enforce_server_ban(now, target);
        }
        self.store_server_bans();
    }

    pub(super) fn cmd_server_unban(&mut self, conn: ConnId, target: &str) {
        if !self.require_server_op(conn) {
            return;
        }
        let wall = self.wall_now();
        let mut bans = std::mem::take(&mut self.server_bans);
        bans.retain(|b| b.live(wall));
        let found = self.find_ban(conn, &bans, target, false);
        let lifted = found.map(|i| bans.remove(i));
        self.server_bans = bans;
        let Some(lifted) = lifted else {
            self.reply(
                conn,
                &error(
                    ErrorCode::NoSuchBan,
                    &format!("no server ban of {target}; server_bans lists them"),
                ),
            );
            return;
        };
        self.audit(
            conn,
            format!("lifted the server ban of {}", lifted.info.target),
        );
        let ts = self.stamp();
        let by = self.name_of(conn);
        self.reply(
            conn,
            &ServerMsg::Unban {
                room: None,
                target: lifted.info.target,
                mute: false,
                by,
                ts,
            },
        );
        self.store_server_bans();
    }

    pub(super) fn cmd_server_bans(&mut self, conn: ConnId, after: Option<u32>) {
        if !self.require_server_op(conn) {
            return;
        }
        let wall = self.wall_now();
        let bans = self
            .server_bans
            .iter()
            .filter(|b| b.live(wall))
            .map(|b| match &b.rule {
                // Operators see the address behind a guest's ban.
                Rule::Addr { addr, bits } if b.info.target.starts_with("guest:") => BanInfo {
                    target: format!("{} ({})", b.info.target, addr_target(*addr, *bits)),
                    ..b.info.clone()
                },
                _ => b.info.clone(),
            })
            .collect();
        self.reply_bans(conn, None, bans, after);
    }

    pub(super) fn cmd_close_room(&mut self, now: UnixMillis, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::CloseRoom { room, reason } = &msg else {
            return;
        };
        if !self.require_server_op(conn) {
            return;
        }
        let Some(key) = self.moderated_room(conn, room, Role::Owner, &msg) else {
            return;
        };
        let Ok(reason) = self.valid_reason(conn, reason.clone()) else {
            return;
        };
        let shown = self.rooms[&key].name.clone();
        if key == names::key(&self.config.default_room) {
            self.reply(
                conn,
                &error(
                    ErrorCode::NotPermitted,
                    &format!("{shown} is the server's default room; it cannot be closed"),
                ),
            );
            return;
        }
        let r = self.rooms.get_mut(&key).expect("checked");
        r.settings.modes.closed = true;
        let gone: Vec<ConnId> = r.members.iter().copied().collect();
        let by = self.name_of(conn);
        let ts = self.stamp();
        let mut to = gone.clone();
        if !to.contains(&conn) {
            to.push(conn);
        }
        self.send(
            to,
            &ServerMsg::RoomClosed {
                room: shown.clone(),
                by,
                reason: reason.clone(),
                ts,
            },
        );
        self.audit(conn, format!("closed {shown}{}", with_reason(&reason)));
        self.remove_from_room(now, &key, &gone);
        self.store_room_settings(&key);
    }

    pub(super) fn cmd_open_room(&mut self, conn: ConnId, msg: ClientMsg) {
        let ClientMsg::OpenRoom { room } = &msg else {
            return;
        };
        if !self.require_server_op(conn) {
            return;
        }
        let Some(key) = self.moderated_room(conn, room, Role::Owner, &msg) else {
            return;
        };
        let r = self.rooms.get_mut(&key).expect("checked");
        let before = r.settings.modes();
        r.settings.modes.closed = false;
        let (shown, modes) = (r.name.clone(), r.settings.modes());
        let mut to: Vec<ConnId> = r.members.iter().copied().collect();
        let by = self.name_of(conn);
        let ts = self.stamp();
        if !to.contains(&conn) {
            to.push(conn);
        }
        self.send(
            to,
            &ServerMsg::Mode {
                room: shown.clone(),
                modes,
                before: Some(before),
                created: None,
                by: Some(by),
                ts: Some(ts),
            },
        );
        self.audit(conn, format!("opened {shown} again"));
        self.store_room_settings(&key);
    }

    pub(super) fn cmd_connections(&mut self, conn: ConnId, after: Option<u64>) {
        if !self.require_server_op(conn) {
            return;
        }
        let mut all: Vec<ConnInfo> = self
            .conns
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| id.0 > a))
            .filter_map(|(id, c)| {
                Some(ConnInfo {
                    conn: id.0,
                    name: c.name.clone()?,
                    account: c.account.as_ref().map(|a| self.accounts[a].name.clone()),
                    addr: c.addr.to_string(),
                    rooms: c.rooms.len() as u32,
                })
            })
            .collect();
        all.sort_unstable_by_key(|c| c.conn);
        let budget = self.config.max_line.saturating_sub(128).max(1);
        let (conns, more) = fit_by_size(all.into_iter(), budget, |c| {
            c.name.len() + c.addr.len() + c.account.as_ref().map_or(0, String::len) + 64
        });
        self.audit(conn, "listed the connections".to_string());
        self.reply(conn, &ServerMsg::Connections { conns, more });
    }

    /// True when `account` is an owner of a room in memory.
    pub(super) fn owns(&self, account: &str, key: &str) -> bool {
        self.account_role(key, account) == Role::Owner
    }

    /// A room's settings are within their bounds, and every owner counts the room as owned.
    pub(super) fn check_settings(&self, key: &str, room: &Room) -> Result<(), String> {
        let s = &room.settings;
        let max = self.config.max_list;
        // The creator's ownership is given without counting against the list.
        if s.bans.len() > max || s.invites.len() > max || s.roles.len() > max + 1 {
            return Err(format!(
                "room {key} keeps more bans, invites or roles than allowed"
            ));
        }
        for account in s.roles.keys() {
            if self.owns(account, key) && !self.accounts[account].owned.contains(key) {
                return Err(format!("{account} owns {key} without counting it"));
            }
        }
        Ok(())
    }

    /// The roles of a room's members who have one, by display name.
    pub(super) fn member_roles(&self, key: &str) -> BTreeMap<String, Role> {
        let Some(room) = self.rooms.get(key) else {
            return BTreeMap::new();
        };
        room.members
            .iter()
            .filter_map(|&m| {
                let role = self.role_of(m, key);
                (role != Role::Member).then(|| (self.name_of(m), role))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_and_single_characters() {
        assert!(names::glob("troll*", "troll"));
        assert!(names::glob("troll*", "troll42"));
        assert!(names::glob("*oll", "troll"));
        assert!(names::glob("t?oll", "troll"));
        assert!(names::glob("*", ""));
        assert!(names::glob("a*b*c", "axxbyyc"));
        assert!(!names::glob("a*b*c", "axxbyy"));
        assert!(!names::glob("troll", "trolls"));
        assert!(!names::glob("t?oll", "toll"));
        assert!(!names::glob("", "x"));
    }

    #[test]
    fn address_prefixes_match_what_they_cover_and_nothing_else() {
        let (net, bits) = parse_addr("203.0.113.7/24").unwrap();
        assert_eq!(net, "203.0.113.0".parse::<IpAddr>().unwrap());
        assert!(in_prefix("203.0.113.200".parse().unwrap(), net, bits));
        assert!(!in_prefix("203.0.114.1".parse().unwrap(), net, bits));
        assert!(!in_prefix("::1".parse().unwrap(), net, bits));
        let (net, bits) = parse_addr("2001:db8::1").unwrap();
        assert_eq!(bits, 64, "IPv6 bans are per /64, as the hub keys addresses");
        assert!(in_prefix("2001:db8::".parse().unwrap(), net, bits));
        assert!(!in_prefix("2001:db8:0:1::".parse().unwrap(), net, bits));
        assert!(in_prefix("2001:db8::ffff".parse().unwrap(), net, bits));
        // Only the prefix is kept, so that two spellings of one ban are one ban.
        assert_eq!(
            parse_addr("2001:db8::aaaa:bbbb:cccc:dddd"),
            parse_addr("2001:db8::/64")
        );
        assert_eq!(addr_target(net, bits), "addr:2001:db8::/64");
        assert!(parse_addr("203.0.113.7/33").is_none());
        assert!(parse_addr("203.0.113.7/0").is_none());
        assert!(parse_addr("example.org").is_none());
    }

    #[test]
    fn durations_read_in_the_largest_fitting_unit() {
        assert_eq!(lasts(0, None), "");
        assert_eq!(lasts(0, Some(30_000)), " for 30 s more");
        assert_eq!(lasts(0, Some(90_000)), " for 2 min more");
        assert_eq!(lasts(0, Some(7_200_000)), " for 2 h more");
        assert_eq!(lasts(0, Some(86_400_000 * 3)), " for 3 d more");
    }
}

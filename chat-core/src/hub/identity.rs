//! Who someone is: `hello`, name claims (unique by key and by look-alike skeleton, and never a
//! registered account's name), renames.

use super::*;

impl Hub {
    pub(super) fn cmd_hello(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        version: u32,
        raw: &str,
        password: Option<Secret>,
    ) {
        if self.conns.get(&conn).is_some_and(|c| c.name.is_some()) {
            self.reply(
                conn,
                &error(ErrorCode::AlreadyRegistered, "you have already said hello"),
            );
            return;
        }
        if version != PROTOCOL_VERSION {
            self.reply(
                conn,
                &error(
                    ErrorCode::UnsupportedVersion,
                    &format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                ),
            );
            self.kick(now, conn, reason::UNSUPPORTED_VERSION);
            return;
        }
        if let Some(password) = password {
            self.start_login(now, conn, raw, password, true);
            return;
        }
        if self.config.require_account {
            self.reply(
                conn,
                &error(
                    ErrorCode::AccountRequired,
                    "this server is for registered accounts only: say hello with your password",
                ),
            );
            return;
        }
        let Some(name) = self.claim_name(conn, raw) else {
            return;
        };
        self.finish_hello(now, conn, name, None);
    }

    /// Registers a connection under `name` (already claimed): welcome, the default room, and
    /// for an account, the rooms it is in.
    pub(super) fn finish_hello(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        name: String,
        account: Option<String>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.name = Some(name.clone());
        self.timers.remove(&(c.check_at, conn));
        let named = self.conns.values().filter(|c| c.name.is_some()).count() as u64;
        self.peak_users = self.peak_users.max(named);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.check_at = c.last_seen + self.config.ping_interval;
        self.timers.insert((c.check_at, conn));
        let shown = account.as_ref().map(|key| self.accounts[key].name.clone());
        c.account = account;
        if self.enforce_server_ban(now, conn) {
            return;
        }
        self.reply(
            conn,
            &ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
                name,
                server: self.config.server_name.clone(),
                motd: self.config.motd.clone(),
                limits: self.limits(),
                account: shown,
            },
        );
        // A new device of an account already online takes the account's rooms, not the
        // default room: joining that would pull the other devices back into it. Clients that
        // pick their own rooms (IRC) are not put anywhere.
        let wire = self.conns.get(&conn).map_or(Wire::Json, |c| c.wire);
        if self.other_devices(conn).is_empty()
            && wire.joins_default_room()
            && !self.config.default_room.is_empty()
        {
            let lobby = self.config.default_room.clone();
            self.cmd_join(now, conn, &lobby, None, None);
        }
        self.queue_account_rooms(conn);
        self.deliver_offline(conn);
    }

    /// Validates a requested name and reserves it for `conn`, replying with an error if it is
    /// invalid, taken, or a registered account's. Releases the connection's previous name.
    pub(super) fn claim_name(&mut self, conn: ConnId, raw: &str) -> Option<String> {
        let name = match names::normalize_name(raw) {
            Ok(name) => name,
            Err(err) => {
                self.reply(conn, &error(ErrorCode::InvalidName, &name_error(&err)));
                return None;
            }
        };
        if names::is_service(&name) {
            let why = format!(
                "the name {name} is kept for the server's services (what is written to it may be a password); pick another"
            );
            self.reply(conn, &error(ErrorCode::NameReserved, &why));
            return None;
        }
        let key = names::key(&name);
        let account = self.account_like(&name);
        if let Some(account) = account {
            let shown = self.accounts[&account].name.clone();
            let message = if account == key {
                format!(
                    "the name {shown} belongs to a registered account: log in to use it, or pick another"
                )
            } else {
                format!(
                    "the name {name} looks too much like the registered account {shown}; pick another"
                )
            };
            self.reply(conn, &error(ErrorCode::NameReserved, &message));
            return None;
        }
        if self.names.get(&key).is_some_and(|h| h != &[conn]) {
            self.reply(
                conn,
                &error(
                    ErrorCode::NameTaken,
                    &format!("the name {name} is taken; pick another"),
                ),
            );
            return None;
        }
        if let Some(similar) = look_alike(&self.name_skeletons, &name)
            && let Some(&owner) = self.names.get(&similar).and_then(|h| h.first())
            && owner != conn
        {
            let shown = self.name_of(owner);
            self.reply(
                conn,
                &error(
                    ErrorCode::NameTaken,
                    &format!(
                        "the name {name} looks too much like {shown}, who is here; pick another"
                    ),
                ),
            );
            return None;
        }
        self.hold_name(conn, &name);
        Some(name)
    }

    /// Makes `name` the one `conn` holds in the index (the caller checked it may), letting go
    /// of the one it held before.
    pub(super) fn hold_name(&mut self, conn: ConnId, name: &str) {
        let key = names::key(name);
        let mut same = false;
        if let Some(old) = self.conns.get(&conn).and_then(|c| c.name.clone()) {
            same = names::key(&old) == key;
            // Away follows the person to the new name.
            let away = self.away.get(&names::key(&old)).cloned();
            self.release_name_quietly(&old, conn, same);
            if let Some(reason) = away {
                self.away.insert(key.clone(), reason);
            }
        }
        let holders = self.names.entry(key.clone()).or_default();
        let arrived = holders.is_empty();
        if !holders.contains(&conn) {
            holders.push(conn);
        }
        index_skeletons(&mut self.name_skeletons, &key);
        // Only a name new to the server is news (not another device, not a change of case).
        if arrived && !same {
            self.tell_watchers(&key, name, true);
        }
    }

    /// Tells whoever watches `key` that `name` came online or went offline.
    pub(super) fn tell_watchers(&mut self, key: &str, name: &str, online: bool) {
        let Some(watchers) = self.watchers.get(key) else {
            return;
        };
        let msg = if online {
            ServerMsg::Watching {
                online: vec![name.to_string()],
                offline: Vec::new(),
            }
        } else {
            ServerMsg::Watching {
                online: Vec::new(),
                offline: vec![name.to_string()],
            }
        };
        for watcher in watchers.clone() {
            self.reply(watcher, &msg);
        }
    }

    /// `watch`: names added (answered with who of them is online), removed, or all cleared.
    pub(super) fn cmd_watch(
        &mut self,
        conn: ConnId,
        add: Vec<String>,
        remove: Vec<String>,
        clear: bool,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut dropped: Vec<String> = Vec::new();
        if clear {
            dropped.extend(std::mem::take(&mut c.watching));
        }
        for name in &remove {
            let key = names::key(name.trim());
            if c.watching.remove(&key) {
                dropped.push(key);
            }
        }
        for key in dropped {
            self.unwatch(&key, conn);
        }
        if add.is_empty() {
            return;
        }
        let (mut online, mut offline) = (Vec::new(), Vec::new());
        for raw in &add {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let key = names::key(raw);
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if !c.watching.contains(&key) && c.watching.len() >= MAX_WATCHED {
                let why = format!("you watch {MAX_WATCHED} names already");
                self.reply(conn, &error(ErrorCode::ListFull, &why));
                break;
            }
            // A mask or a name nobody may hold is watched all the same: it is never online.
            c.watching.insert(key.clone());
            let watchers = self.watchers.entry(key.clone()).or_default();
            if !watchers.contains(&conn) {
                watchers.push(conn);
            }
            match self.names.get(&key).and_then(|h| h.first()) {
                Some(&holder) => online.push(self.name_of(holder)),
                None => offline.push(raw.to_string()),
            }
        }
        if !online.is_empty() || !offline.is_empty() {
            self.reply(conn, &ServerMsg::Watching { online, offline });
        }
    }

    /// Those who watch `conn`'s name with `details`: they hear of its away and real-name
    /// changes as if they shared a room.
    pub(super) fn detail_watchers(&self, conn: ConnId) -> Vec<ConnId> {
        let Some(name) = self.conns.get(&conn).and_then(|c| c.name.as_deref()) else {
            return Vec::new();
        };
        self.watchers
            .get(&names::key(name))
            .map(|w| {
                w.iter()
                    .copied()
                    .filter(|c| self.conns.get(c).is_some_and(|c| c.watch_details))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `conn` no longer watches `key`.
    pub(super) fn unwatch(&mut self, key: &str, conn: ConnId) {
        if let Some(watchers) = self.watchers.get_mut(key) {
            watchers.retain(|&w| w != conn);
            if watchers.is_empty() {
                self.watchers.remove(key);
            }
        }
    }

    pub(super) fn cmd_nick(&mut self, conn: ConnId, raw: &str) {
        if let Some(account) = self.conns.get(&conn).and_then(|c| c.account.clone()) {
            let shown = self.accounts[&account].name.clone();
            self.reply(
                conn,
                &error(
                    ErrorCode::NameReserved,
                    &format!("you are logged in as {shown}: your name is your account's"),
                ),
            );
            return;
        }
        if let Ok(name) = names::normalize_name(raw)
            && self.name_banned(conn, &name)
        {
            return;
        }
        // A new name is text every room sees: not while muted in one of them (as IRC
        // servers refuse a nick change while banned or muted on a channel).
        if let Some(room) = self.silenced_in(conn) {
            let why = format!("you cannot change your name while you may not speak in {room}");
            self.reply(conn, &error(ErrorCode::CannotSpeak, &why));
            return;
        }
        let Some(new) = self.claim_name(conn, raw) else {
            return;
        };
        self.rename(conn, new);
    }

    /// Gives `conn` the name it now holds in the index, telling everyone who shares a room.
    pub(super) fn rename(&mut self, conn: ConnId, new: String) {
        let old = self.name_of(conn);
        if new == old {
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.name = Some(new.clone());
        }
        let peers = self.peers(conn);
        let ts = self.stamp();
        self.send(peers, &ServerMsg::Nick { old, new, ts });
    }

    /// Gives up `conn`'s hold on `name`; the name is free once no device of it is left.
    pub(super) fn release_name(&mut self, name: &str, conn: ConnId) {
        self.release_name_quietly(name, conn, false);
    }

    /// [`Hub::release_name`]; `quietly`: without telling those who watch it (the holder only
    /// changes its case).
    fn release_name_quietly(&mut self, name: &str, conn: ConnId, quietly: bool) {
        let key = names::key(name);
        let Some(holders) = self.names.get_mut(&key) else {
            return;
        };
        holders.retain(|&h| h != conn);
        if !holders.is_empty() {
            return;
        }
        self.names.remove(&key);
        self.away.remove(&key);
        unindex_skeletons(&mut self.name_skeletons, &key);
        if !quietly {
            self.tell_watchers(&key, name, false);
        }
    }

    /// The other connections holding `conn`'s name: the other devices of its account.
    pub(super) fn other_devices(&self, conn: ConnId) -> Vec<ConnId> {
        let Some(name) = self.conns.get(&conn).and_then(|c| c.name.as_deref()) else {
            return Vec::new();
        };
        self.names
            .get(&names::key(name))
            .map(|h| h.iter().copied().filter(|&d| d != conn).collect())
            .unwrap_or_default()
    }

    /// True when another device of `conn`'s account is in the room.
    pub(super) fn name_in_room(&self, key: &str, conn: ConnId) -> bool {
        let Some(room) = self.rooms.get(key) else {
            return false;
        };
        self.other_devices(conn)
            .iter()
            .any(|d| room.members.contains(d))
    }

    /// A free name for a guest who must give theirs up.
    pub(super) fn fallback_name(&self, conn: ConnId) -> String {
        let base = format!("Guest{}", conn.0);
        let mut name = base.clone();
        let mut n = 1;
        loop {
            let key = names::key(&name);
            let free = !self.names.contains_key(&key)
                && look_alike(&self.name_skeletons, &name).is_none()
                && self.account_like(&name).is_none();
            if free {
                return name;
            }
            n += 1;
            name = format!("{base}_{n}");
        }
    }
}

/// Adds the skeletons of a name (by its key: [`names::skeletons`] of the key) to an index of
/// skeletons, each pointing at the key; a skeleton another key holds already stays with it.
pub(super) fn index_skeletons(index: &mut HashMap<String, String>, key: &str) {
    for skeleton in names::skeletons(key) {
        index.entry(skeleton).or_insert_with(|| key.to_string());
    }
}

/// Takes a key's skeletons out of an index of skeletons.
pub(super) fn unindex_skeletons(index: &mut HashMap<String, String>, key: &str) {
    for skeleton in names::skeletons(key) {
        if index.get(&skeleton).is_some_and(|k| k == key) {
            index.remove(&skeleton);
        }
    }
}

/// The key of another name in the index that `name` looks like: any skeleton of `name` as
/// typed, folded or in capitals, against those of the names in the index.
pub(super) fn look_alike(index: &HashMap<String, String>, name: &str) -> Option<String> {
    let key = names::key(name);
    names::skeletons(name)
        .into_iter()
        .find_map(|s| index.get(&s).filter(|k| **k != key).cloned())
}

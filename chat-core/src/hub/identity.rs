//! Who someone is: `hello`, name claims (unique by key and by look-alike skeleton), renames.

use super::*;

impl<E: Encode> Hub<E> {
    pub(super) fn cmd_hello(&mut self, now: UnixMillis, conn: ConnId, version: u32, raw: &str) {
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
        let Some(name) = self.claim_name(conn, raw) else {
            return;
        };
        let c = self.conns.get_mut(&conn).expect("caller checked");
        c.name = Some(name.clone());
        self.timers.remove(&(c.check_at, conn));
        c.check_at = c.last_seen + self.config.ping_interval;
        self.timers.insert((c.check_at, conn));
        self.reply(
            conn,
            &ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
                name,
                server: self.config.server_name.clone(),
                motd: self.config.motd.clone(),
                limits: self.limits(),
            },
        );
        let lobby = self.config.default_room.clone();
        self.cmd_join(now, conn, &lobby, None);
    }

    /// Validates a requested name and reserves it for `conn`, replying with an error if it is
    /// invalid or taken. Releases the connection's previous name, if any.
    pub(super) fn claim_name(&mut self, conn: ConnId, raw: &str) -> Option<String> {
        let name = match names::normalize_name(raw) {
            Ok(name) => name,
            Err(err) => {
                self.reply(conn, &error(ErrorCode::InvalidName, &name_error(&err)));
                return None;
            }
        };
        let key = names::key(&name);
        match self.names.get(&key) {
            Some(owner) if *owner != conn => {
                self.reply(
                    conn,
                    &error(
                        ErrorCode::NameTaken,
                        &format!("the name {name} is taken; pick another"),
                    ),
                );
                return None;
            }
            _ => {}
        }
        let skeleton = names::skeleton(&name);
        if let Some(similar) = self.name_skeletons.get(&skeleton)
            && *similar != key
            && self.names.get(similar).is_some_and(|owner| *owner != conn)
        {
            let owner = self.names[similar];
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
        if let Some(old) = self.conns.get(&conn).and_then(|c| c.name.clone()) {
            self.release_name(&old);
        }
        self.names.insert(key.clone(), conn);
        self.name_skeletons.insert(skeleton, key);
        Some(name)
    }

    pub(super) fn cmd_nick(&mut self, conn: ConnId, raw: &str) {
        let old = self.name_of(conn);
        let Some(new) = self.claim_name(conn, raw) else {
            return;
        };
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

    pub(super) fn release_name(&mut self, name: &str) {
        let key = names::key(name);
        self.names.remove(&key);
        let skeleton = names::skeleton(name);
        if self.name_skeletons.get(&skeleton) == Some(&key) {
            self.name_skeletons.remove(&skeleton);
        }
    }
}

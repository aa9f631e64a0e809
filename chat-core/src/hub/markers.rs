//! Read markers: how far an account has read each conversation, kept by the server so that
//! reading on one device clears the unread counts of the others (the model is IRCv3's
//! `draft/read-marker`). Markers only move forward; guests have none (their client keeps its
//! own).

use super::*;

/// Most conversations an account keeps a marker for.
pub const MAX_MARKERS: usize = 1000;

impl Hub {
    pub(super) fn cmd_mark_read(&mut self, conn: ConnId, target: &str, id: MsgId) {
        let Some(account) = self.logged_in(conn) else {
            self.reply(
                conn,
                &error(
                    ErrorCode::NotLoggedIn,
                    "read markers are kept for accounts: log in to keep them across devices",
                ),
            );
            return;
        };
        let key = if target.starts_with('#') {
            match names::normalize_room(target) {
                Ok(room) => names::key(&room),
                Err(err) => {
                    self.reply(conn, &error(ErrorCode::InvalidRoom, &name_error(&err)));
                    return;
                }
            }
        } else {
            match names::normalize_name(target) {
                Ok(name) => names::key(&name),
                Err(err) => {
                    self.reply(conn, &error(ErrorCode::InvalidName, &name_error(&err)));
                    return;
                }
            }
        };
        if id >= self.next_id {
            self.reply(
                conn,
                &error(ErrorCode::Malformed, "no message has that id yet"),
            );
            return;
        }
        let Some(acc) = self.accounts.get_mut(&account) else {
            return;
        };
        let current = acc.markers.get(&key).copied();
        if current.is_none() && acc.markers.len() >= MAX_MARKERS {
            self.reply(
                conn,
                &error(
                    ErrorCode::ListFull,
                    &format!(
                        "an account keeps read markers for at most {MAX_MARKERS} conversations"
                    ),
                ),
            );
            return;
        }
        let msg = ServerMsg::ReadMarker {
            target: target.to_string(),
            id: current.map_or(id, |at| at.max(id)),
        };
        // Only forward: an older marker (a device that was offline) changes nothing, and the
        // sender learns where the account really is.
        if current.is_some_and(|at| at >= id) {
            self.reply(conn, &msg);
            return;
        }
        acc.markers.insert(key, id);
        if self.config.durable {
            let account = acc.name.clone();
            let markers = acc.markers.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let id = self.take_id();
            self.outputs.push_back(Output::Store(Record::ReadMarkers {
                id,
                account,
                markers,
            }));
        }
        let mut devices = self.other_devices(conn);
        devices.push(conn);
        for device in devices {
            self.reply(device, &msg);
        }
    }

    /// After a room's history: where the account has read it up to, if it has a marker.
    pub(super) fn send_marker(&mut self, conn: ConnId, key: &str) {
        let Some(account) = self.logged_in(conn) else {
            return;
        };
        let Some(&id) = self.accounts.get(&account).and_then(|a| a.markers.get(key)) else {
            return;
        };
        let target = self
            .rooms
            .get(key)
            .map_or_else(|| key.to_string(), |r| r.name.clone());
        self.reply(conn, &ServerMsg::ReadMarker { target, id });
    }
}

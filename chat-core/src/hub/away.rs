//! Away status: `away` with a reason marks a person away (all their devices: it belongs to the
//! name), without one marks them back. Everyone who shares a room with them hears of it, member
//! lists carry it, and whoever writes to them directly is told, as IRC's `301` does.

use super::*;

/// The away reason of someone muted somewhere, in place of theirs.
const SILENT_AWAY: &str = "away";

impl Hub {
    pub(super) fn cmd_away(&mut self, conn: ConnId, reason: Option<String>) {
        let Ok(mut reason) = self.valid_reason(conn, reason) else {
            return;
        };
        // Muted somewhere: away, but the reason (text every room would see) is not theirs.
        if reason.is_some() && self.silenced_in(conn).is_some() {
            reason = Some(SILENT_AWAY.to_string());
        }
        let name = self.name_of(conn);
        let key = names::key(&name);
        let changed = match &reason {
            Some(r) => self.away.insert(key, r.clone()).as_deref() != Some(r.as_str()),
            None => self.away.remove(&key).is_some(),
        };
        let msg = ServerMsg::Away { name, reason };
        if !changed {
            // Nothing new for the others; the sender still hears that it took.
            self.reply(conn, &msg);
            return;
        }
        let mut to = self.peers(conn);
        for device in self.other_devices(conn) {
            to.extend(self.peers(device));
        }
        to.extend(self.detail_watchers(conn));
        to.sort_unstable();
        to.dedup();
        // The sender's own answer is its alone (on IRC a numeric, 305/306).
        to.retain(|&c| c != conn);
        self.send(to, &msg);
        self.reply(conn, &msg);
    }

    /// Tells `conn`, who just wrote to `target`, that `target` is away.
    pub(super) fn tell_if_away(&mut self, conn: ConnId, target: ConnId) {
        let name = self.name_of(target);
        if let Some(reason) = self.away.get(&names::key(&name)).cloned() {
            self.reply(
                conn,
                &ServerMsg::Away {
                    name,
                    reason: Some(reason),
                },
            );
        }
    }
}

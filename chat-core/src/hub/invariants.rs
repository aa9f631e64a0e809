//! Internal consistency checks, for property tests and fuzzing.

use super::*;

impl Hub {
    /// Checks the hub's internal consistency, for property tests and fuzzing: every room
    /// member is a registered connection that knows it is a member, every name and skeleton
    /// points at its owner, every connection has its one liveness timer, and every queue is
    /// within its bound. Returns what is wrong.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (key, room) in &self.rooms {
            if names::key(&room.name) != *key {
                return Err(format!("room {key} is stored under the wrong key"));
            }
            for member in &room.members {
                let Some(c) = self.conns.get(member) else {
                    return Err(format!("{member} in {key} is not a connection"));
                };
                if c.name.is_none() {
                    return Err(format!("{member} in {key} is not registered"));
                }
                if !c.rooms.contains(key) {
                    return Err(format!("{member} in {key} does not know it"));
                }
            }
            if room.empty_since.is_some()
                != (room.members.is_empty() && self.expiries.iter().any(|(_, k)| k == key))
            {
                return Err(format!(
                    "room {key} has an expiry out of step with its members"
                ));
            }
            if room.history.len() > self.config.history.max(1) {
                return Err(format!("room {key} keeps too much history"));
            }
            self.check_settings(key, room)?;
        }
        for (account, acc) in &self.accounts {
            for key in &acc.owned {
                if self.rooms.contains_key(key) && !self.owns(account, key) {
                    return Err(format!(
                        "{account} counts {key} as owned, but is not its owner"
                    ));
                }
            }
        }
        if self.rooms.len() > self.config.max_rooms.max(1) + 1 {
            return Err(format!("{} rooms over the cap", self.rooms.len()));
        }
        for (id, c) in &self.conns {
            for key in &c.rooms {
                if !self.rooms.get(key).is_some_and(|r| r.members.contains(id)) {
                    return Err(format!("{id} thinks it is in {key}"));
                }
            }
            if !self.timers.contains(&(c.check_at, *id)) {
                return Err(format!("{id} has no liveness timer"));
            }
            if c.free > c.delayed.len() || c.delayed.len() - c.free > self.config.flood_queue + 1 {
                return Err(format!("{id} holds {} delayed frames", c.delayed.len()));
            }
            if let Some(name) = &c.name
                && !self
                    .names
                    .get(&names::key(name))
                    .is_some_and(|h| h.contains(id))
            {
                return Err(format!("{id}'s name {name} is not in the index"));
            }
        }
        if self.timers.len() != self.conns.len() {
            return Err(format!(
                "{} timers for {} connections",
                self.timers.len(),
                self.conns.len()
            ));
        }
        for (key, holders) in &self.names {
            for owner in holders {
                let holder = self.conns.get(owner).and_then(|c| c.name.as_deref());
                if holder.map(names::key).as_ref() != Some(key) {
                    return Err(format!("name {key} points at {owner}, who is not it"));
                }
                // Only an account's devices share a name.
                let account = self.conns.get(owner).and_then(|c| c.account.as_ref());
                if holders.len() > 1 && account != Some(key) {
                    return Err(format!("{owner} shares the name {key} without its account"));
                }
            }
            if holders.is_empty() {
                return Err(format!("name {key} is held by nobody"));
            }
        }
        for (id, c) in &self.conns {
            if let Some(account) = &c.account
                && (!self.accounts.contains_key(account)
                    || c.name.as_deref().map(names::key).as_ref() != Some(account))
            {
                return Err(format!("{id} is logged in to {account} under another name"));
            }
        }
        for key in self.account_skeletons.values() {
            if !self.accounts.contains_key(key) {
                return Err(format!(
                    "an account skeleton points at {key}, which is no account"
                ));
            }
        }
        for key in self.name_skeletons.values() {
            if !self.names.contains_key(key) {
                return Err(format!("a skeleton points at {key}, which nobody holds"));
            }
        }
        if self.cids.len() != self.cid_order.len() || self.cids.len() > self.config.dedupe_window {
            return Err("the cid memory is out of step or over its bound".into());
        }
        let held = self.pending.iter().filter(|(_, p, _)| p.is_held()).count();
        if held != self.held || held > self.config.max_held {
            return Err(format!("{held} held messages, counted {}", self.held));
        }
        let mut last = 0;
        for (id, _, _) in &self.pending {
            if *id < last {
                return Err("pending messages out of id order".into());
            }
            last = *id;
        }
        Ok(())
    }
}

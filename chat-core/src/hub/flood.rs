//! Flood control: the per-connection token bucket that delays and then kicks, and the limit on
//! new direct-message senders.

use super::*;
use liveness::Queued;

/// Direct-message peers remembered per connection.
pub(super) const DIRECT_PEERS: usize = 256;

impl Hub {
    pub(super) fn handle_frame(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        frame: Result<ClientMsg, FrameError>,
        tag: u64,
    ) {
        self.admit(now, conn, Queued::Frame(frame, tag));
    }

    /// A line the connection's IRC adapter answered itself (an unknown command, a bad line):
    /// it costs a turn as a frame would, so that flooding with such lines is cut off after
    /// the same budget as any other flood.
    pub(super) fn handle_answered(&mut self, now: UnixMillis, conn: ConnId) {
        self.admit(now, conn, Queued::Answered);
    }

    /// Runs a frame (or a turn) now if the connection's token bucket allows, else queues it
    /// (telling the client once) or, past the queue's bound, kicks the connection.
    fn admit(&mut self, now: UnixMillis, conn: ConnId, frame: Queued) {
        let config_rate = self.config.flood_rate;
        let burst = u64::from(self.config.flood_burst) * 1000;
        let flood_queue = self.config.flood_queue;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        let pinged = c.pinged_at.take().is_some();
        // The pong to our ping only proves liveness: it never waits behind throttled frames.
        // Any other pong counts against flood control like every other frame, so pongs cannot
        // be used to make the server work for free.
        if pinged && matches!(frame, Queued::Frame(Ok(ClientMsg::Pong { .. }), _)) {
            return;
        }
        // The first `profile` comes from the IRC adapter with registration (what USER said):
        // it is part of connecting, so it costs nothing and waits for nothing.
        if !c.profiled
            && let Queued::Frame(
                Ok(ClientMsg::Profile {
                    user,
                    realname,
                    bot,
                }),
                _,
            ) = frame
        {
            // Once: every later one costs a turn like any frame (an empty profile leaves the
            // names unset, so they cannot tell).
            c.profiled = true;
            self.cmd_profile(conn, user, realname, bot);
            return;
        }
        if c.waiting() {
            // A room this connection joins is on its way from the store, or its password is
            // being checked: keep the order.
            if c.delayed.len() - c.free >= flood_queue {
                self.counters.flood_kicks += 1;
                self.kick(now, conn, reason::FLOODING);
            } else {
                c.delayed.push_back(frame);
            }
            return;
        }
        if config_rate == 0 {
            self.run_queued(now, conn, frame);
            return;
        }
        refill(c, now, config_rate, burst);
        if c.delayed.is_empty() && c.tokens >= 1000 {
            c.tokens -= 1000;
            self.run_queued(now, conn, frame);
            return;
        }
        if c.delayed.len() - c.free >= flood_queue {
            self.counters.flood_kicks += 1;
            self.kick(now, conn, reason::FLOODING);
            return;
        }
        let first_delay = c.delayed.is_empty();
        c.delayed.push_back(frame);
        if c.release_at.is_none() {
            let at = now + (1000 - c.tokens).div_ceil(u64::from(config_rate));
            c.release_at = Some(at);
            self.releases.insert((at, conn));
        }
        if first_delay {
            self.reply(
                conn,
                &error(
                    ErrorCode::Flooding,
                    "you are sending too fast; your messages are delayed",
                ),
            );
        }
    }

    pub(super) fn run_delayed(&mut self, now: UnixMillis, conn: ConnId) {
        let rate = self.config.flood_rate.max(1);
        let burst = u64::from(self.config.flood_burst) * 1000;
        let unlimited = self.config.flood_rate == 0;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.waiting() {
                return;
            }
            refill(c, now, rate, burst);
            if c.delayed.is_empty() {
                return;
            }
            if unlimited || c.free > 0 {
                // Frames the hub queued itself (joins waiting for a room or a login) cost
                // the client nothing.
                c.free = c.free.saturating_sub(1);
                let frame = c.delayed.pop_front().expect("checked non-empty");
                self.run_queued(now, conn, frame);
                continue;
            }
            if c.tokens < 1000 {
                let at = now + (1000 - c.tokens).div_ceil(u64::from(rate));
                c.release_at = Some(at);
                self.releases.insert((at, conn));
                return;
            }
            c.tokens -= 1000;
            let frame = c.delayed.pop_front().expect("checked non-empty");
            self.run_queued(now, conn, frame);
        }
    }

    fn run_queued(&mut self, now: UnixMillis, conn: ConnId, item: Queued) {
        if let Queued::Frame(frame, tag) = item {
            // Every answer this frame causes carries its tag, however deep the call.
            let outer = self.tag.replace((conn, tag));
            self.process(now, conn, frame);
            self.tag = outer;
        }
    }

    /// Limits how many new people may message one user each minute; people who exchanged
    /// messages lately are not new, in either direction.
    pub(super) fn direct_allowed(&mut self, now: UnixMillis, from: ConnId, to: ConnId) -> bool {
        let limit = self.config.direct_new_senders_per_minute as usize;
        if limit == 0 || from == to {
            return true;
        }
        let (from_key, to_key) = (
            names::key(&self.name_of(from)),
            names::key(&self.name_of(to)),
        );
        let Some(recipient) = self.conns.get_mut(&to) else {
            return true;
        };
        if !recipient.direct_peers.contains_key(&from_key) {
            while recipient
                .direct_new
                .front()
                .is_some_and(|&t| t + 60_000 <= now)
            {
                recipient.direct_new.pop_front();
            }
            if recipient.direct_new.len() >= limit {
                let shown = self.name_of(to);
                self.reply(
                    from,
                    &error(
                        ErrorCode::DirectThrottled,
                        &format!(
                            "{shown} is getting direct messages from too many new people; try again in a minute"
                        ),
                    ),
                );
                return false;
            }
            recipient.direct_new.push_back(now);
        }
        remember_peer(&mut recipient.direct_peers, from_key, now);
        if let Some(sender) = self.conns.get_mut(&from) {
            remember_peer(&mut sender.direct_peers, to_key, now);
        }
        true
    }
}

/// Notes a direct-message peer, forgetting the one quiet the longest past [`DIRECT_PEERS`].
pub(super) fn remember_peer(peers: &mut HashMap<String, UnixMillis>, key: String, now: UnixMillis) {
    if peers.len() >= DIRECT_PEERS
        && !peers.contains_key(&key)
        && let Some(oldest) = peers
            .iter()
            .min_by_key(|(_, t)| **t)
            .map(|(k, _)| k.clone())
    {
        peers.remove(&oldest);
    }
    peers.insert(key, now);
}

/// Adds the tokens earned since the last refill, capped at the burst.
pub(super) fn refill(c: &mut Conn, now: UnixMillis, rate: u32, burst: u64) {
    let elapsed = now.saturating_sub(c.tokens_at);
    c.tokens = (c.tokens + elapsed * u64::from(rate)).min(burst);
    c.tokens_at = now;
}

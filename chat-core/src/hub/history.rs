//! History pages: `history` answers, join catch-up, and fitting pages into one line.

use super::*;

impl Hub {
    /// The history a member gets on joining: the latest [`HubConfig::join_history`] messages,
    /// or with `since` what it missed, oldest first, a page at a time.
    pub(super) fn join_history(&mut self, conn: ConnId, key: &str, since: Option<MsgId>) {
        let room = &self.rooms[key];
        let budget = self.page_budget(room);
        let (messages, more, newer) = match since {
            Some(since) => {
                // Catch-up: what was missed, oldest first, a page at a time.
                let start = room.history.partition_point(|m| m.id <= since);
                let (page, cut) = fit(
                    room.history.range(start..),
                    self.config.history_page_max,
                    budget,
                );
                // Missed messages older than what is kept cannot be replayed; say so.
                let lost = room.evicted_through > since;
                (page, lost, cut)
            }
            None => {
                let (mut page, cut) =
                    fit(room.history.iter().rev(), self.config.join_history, budget);
                page.reverse();
                (page, cut, false)
            }
        };
        let history = ServerMsg::History {
            room: room.name.clone(),
            messages,
            more,
            newer,
        };
        self.reply(conn, &history);
    }

    /// Bytes of messages that fit in one `history` line within the announced line limit.
    pub(super) fn page_budget(&self, room: &Room) -> usize {
        self.config
            .max_line
            .saturating_sub(128 + room.name.len())
            .max(1)
    }

    pub(super) fn cmd_history(
        &mut self,
        conn: ConnId,
        raw: &str,
        before: Option<MsgId>,
        after: Option<MsgId>,
        limit: u32,
    ) {
        let Some((key, _)) = self.existing_room(conn, raw) else {
            return;
        };
        let room = &self.rooms[&key];
        let budget = self.page_budget(room);
        let count = (limit as usize).min(self.config.history_page_max);
        let (messages, more, newer) = match after {
            Some(after) => {
                let start = room.history.partition_point(|m| m.id <= after);
                let (page, cut) = fit(room.history.range(start..), count, budget);
                (page, start > 0, cut)
            }
            None => {
                let end = match before {
                    Some(before) => room.history.partition_point(|m| m.id < before),
                    None => room.history.len(),
                };
                let (mut page, _) = fit(room.history.range(..end).rev(), count, budget);
                page.reverse();
                let more = end > page.len();
                (page, more, false)
            }
        };
        let msg = ServerMsg::History {
            room: room.name.clone(),
            messages,
            more,
            newer,
        };
        self.reply(conn, &msg);
    }
}

/// Takes messages in the order given while they fit in `budget` bytes of JSON (at least one,
/// at most `count`). Returns them and whether any were left.
fn fit<'a>(
    messages: impl Iterator<Item = &'a ChatMessage>,
    count: usize,
    budget: usize,
) -> (Vec<ChatMessage>, bool) {
    let mut page = Vec::new();
    let mut used = 0;
    let mut messages = messages.peekable();
    while let Some(m) = messages.peek() {
        let size = serde_json::to_string(m).map_or(0, |s| s.len() + 1);
        if page.len() >= count || (!page.is_empty() && used + size > budget) {
            break;
        }
        used += size;
        page.push((*m).clone());
        messages.next();
    }
    (page, messages.peek().is_some())
}

/// Takes items while their estimated sizes fit in `budget` (at least one). Returns them and
/// whether any were left.
pub(super) fn fit_by_size<T>(
    items: impl Iterator<Item = T>,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut page = Vec::new();
    let mut used = 0;
    let mut items = items.peekable();
    while let Some(item) = items.peek() {
        let n = size(item);
        if !page.is_empty() && used + n > budget {
            break;
        }
        used += n;
        page.extend(items.next());
    }
    (page, items.peek().is_some())
}

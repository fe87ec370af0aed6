//! RFC822.SIZE of the selected folder's messages, kept from the last listing
//! so that `fetch_bodies` can batch by size and check what it receives.

/// Sizes by UID, sorted by UID. IMAP sizes are 32-bit numbers (RFC 3501
/// `number`), so an entry takes 8 bytes: a listing of 60 000 UIDs takes
/// 0.5 MB, a quarter of a `BTreeMap<u32, u64>` filled in UID order.
#[derive(Debug, Default)]
pub(super) struct ListedSizes(Vec<(u32, u32)>);

impl ListedSizes {
    pub(super) fn get(&self, uid: u32) -> Option<u64> {
        self.position(uid).ok().map(|at| u64::from(self.0[at].1))
    }

    pub(super) fn contains(&self, uid: u32) -> bool {
        self.position(uid).is_ok()
    }

    /// Sets the size of `uid`. Listings come in UID order, so the usual
    /// case appends. A size beyond 32 bits cannot come from the wire; it
    /// saturates, and the size check then refuses the body.
    pub(super) fn insert(&mut self, uid: u32, size: u64) {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        if self.0.last().is_none_or(|(last, _)| *last < uid) {
            self.0.push((uid, size));
            return;
        }
        match self.position(uid) {
            Ok(at) => self.0[at].1 = size,
            Err(at) => self.0.insert(at, (uid, size)),
        }
    }

    pub(super) fn extend(&mut self, sizes: impl IntoIterator<Item = (u32, u64)>) {
        for (uid, size) in sizes {
            self.insert(uid, size);
        }
    }

    /// Forgets the sizes of `uids` in one pass, however many there are.
    pub(super) fn remove_all(&mut self, uids: &[u32]) {
        let mut gone = uids.to_vec();
        gone.sort_unstable();
        self.0.retain(|(uid, _)| gone.binary_search(uid).is_err());
    }

    pub(super) fn clear(&mut self) {
        // The memory goes too: the next folder may be much smaller.
        self.0 = Vec::new();
    }

    fn position(&self, uid: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&uid, |(u, _)| *u)
    }
}

#[cfg(test)]
mod tests {
    use super::ListedSizes;

    #[test]
    fn sizes_are_found_by_uid_whatever_the_order_they_came_in() {
        let mut sizes = ListedSizes::default();
        sizes.extend([(5, 500), (9, 900), (2, 200), (7, 700), (9, 901)]);
        assert_eq!(sizes.get(2), Some(200));
        assert_eq!(sizes.get(5), Some(500));
        assert_eq!(sizes.get(7), Some(700));
        assert_eq!(sizes.get(9), Some(901), "a later size replaces the first");
        assert_eq!(sizes.get(3), None);
        assert!(sizes.contains(7) && !sizes.contains(8));
    }

    #[test]
    fn removed_uids_are_gone_and_the_others_stay() {
        let mut sizes = ListedSizes::default();
        sizes.extend((1..=10).map(|uid| (uid, u64::from(uid) * 10)));
        sizes.remove_all(&[9, 2, 4, 11]);
        let left: Vec<u32> = (1..=11).filter(|uid| sizes.contains(*uid)).collect();
        assert_eq!(left, [1, 3, 5, 6, 7, 8, 10]);
        assert_eq!(sizes.get(10), Some(100));
        sizes.clear();
        assert_eq!(sizes.get(1), None);
    }

    #[test]
    fn a_size_beyond_32_bits_matches_no_body() {
        let mut sizes = ListedSizes::default();
        sizes.insert(1, u64::from(u32::MAX) + 5);
        assert_eq!(sizes.get(1), Some(u64::from(u32::MAX)));
    }
}

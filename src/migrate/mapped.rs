//! The destination store seen through the folder map: the engine syncs a
//! source folder to the folder of the same name on the other side, so the
//! destination is shown to it under source names. Everything else passes
//! through untouched.

use super::mapping::FolderMap;
use crate::model::Flags;
use crate::model::{FolderName, Identity, MsgKey, MsgMeta};
use crate::store::{
    Appended, BodySink, Caps, ChangeStamp, FolderInfo, FolderList, FolderStatus, NewMessage, Store,
    StoreError, StoreResult,
};
use std::collections::HashMap;
use std::sync::Arc;

pub struct MappedStore<S: Store> {
    inner: S,
    map: Arc<FolderMap>,
    /// The source folders, whose destinations the listing reports.
    sources: Arc<Vec<FolderName>>,
}

impl<S: Store> MappedStore<S> {
    pub fn new(inner: S, map: Arc<FolderMap>, sources: Arc<Vec<FolderName>>) -> MappedStore<S> {
        MappedStore {
            inner,
            map,
            sources,
        }
    }

    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn target(&self, source: &FolderName) -> StoreResult<FolderName> {
        self.map
            .target(source)
            .map(|(target, _)| target)
            .map_err(|reason| {
                StoreError::folder(source, format!("no destination folder: {reason}"))
            })
    }
}

impl<S: Store> Store for MappedStore<S> {
    fn caps(&self) -> &Caps {
        self.inner.caps()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The destination folders that source folders map to, under the source
    /// names; folders no source folder maps to are left out, so the engine
    /// never sees them.
    fn list_folders(&mut self) -> StoreResult<FolderList> {
        let listed = self.inner.list_folders()?;
        let by_name: HashMap<&FolderName, &FolderInfo> =
            listed.folders.iter().map(|f| (&f.name, f)).collect();
        let folders = self
            .sources
            .iter()
            .filter_map(|source| {
                let (target, _) = self.map.target(source).ok()?;
                by_name.get(&target).map(|info| FolderInfo {
                    name: source.clone(),
                    role: info.role,
                    selectable: info.selectable,
                })
            })
            .collect();
        Ok(FolderList {
            folders,
            rejected: Vec::new(),
        })
    }

    fn create_folder(&mut self, name: &FolderName) -> StoreResult<()> {
        let target = self.target(name)?;
        self.inner.create_folder(&target)
    }

    fn status(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        let target = self.target(name)?;
        self.inner.status(&target)
    }

    fn select(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        let target = self.target(name)?;
        self.inner.select(&target)
    }

    fn change_stamp(&mut self, name: &FolderName) -> StoreResult<Option<ChangeStamp>> {
        let target = self.target(name)?;
        self.inner.change_stamp(&target)
    }

    fn list_messages(&mut self) -> StoreResult<Vec<MsgMeta>> {
        self.inner.list_messages()
    }

    fn fetch_identities(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, Identity)>> {
        self.inner.fetch_identities(keys)
    }

    fn fetch_bodies(&mut self, keys: &[MsgKey], sink: &mut BodySink<'_>) -> StoreResult<()> {
        self.inner.fetch_bodies(keys, sink)
    }

    fn append(&mut self, msg: &NewMessage<'_>) -> StoreResult<()> {
        self.inner.append(msg)
    }

    fn flush_appends(&mut self) -> StoreResult<Vec<Appended>> {
        self.inner.flush_appends()
    }

    fn find_tracked(&mut self, ids: &[u64]) -> StoreResult<Vec<(u64, MsgKey)>> {
        self.inner.find_tracked(ids)
    }

    fn store_flags(&mut self, keys: &[MsgKey], add: Flags, remove: Flags) -> StoreResult<()> {
        self.inner.store_flags(keys, add, remove)
    }

    fn delete(&mut self, keys: &[MsgKey]) -> StoreResult<()> {
        self.inner.delete(keys)
    }

    fn share_memory(&mut self, connections: usize) {
        self.inner.share_memory(connections);
    }

    fn stages_in_memory(&self) -> bool {
        self.inner.stages_in_memory()
    }

    fn close(&mut self) -> StoreResult<()> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::mapping::{parse_map, FolderRules, Namespace};
    use crate::store::memory::MemoryStore;

    fn name(s: &str) -> FolderName {
        FolderName::parse(s).unwrap()
    }

    #[test]
    fn the_destination_appears_under_source_names() {
        let mut source = MemoryStore::imap_like();
        for folder in ["Old Name", "Old Name/Sub", "Same"] {
            source.add_folder(&name(folder));
        }
        let dest = MemoryStore::imap_like();
        dest.add_folder(&name("New/Name"));
        dest.add_folder(&name("Unrelated"));
        let rules = FolderRules {
            maps: vec![parse_map("Old Name=New/Name").unwrap()],
            renames: Vec::new(),
        };
        let source_list = source.list_folders().unwrap();
        let map = FolderMap::new(
            &source_list,
            &Namespace::default(),
            &dest.handle().list_folders().unwrap(),
            &Namespace::default(),
            &rules,
        );
        let sources: Vec<FolderName> = source_list.folders.iter().map(|f| f.name.clone()).collect();
        let mut mapped = MappedStore::new(dest.handle(), Arc::new(map), Arc::new(sources));

        let listed: Vec<String> = mapped
            .list_folders()
            .unwrap()
            .folders
            .into_iter()
            .map(|f| f.name.to_string())
            .collect();
        assert_eq!(listed, vec!["INBOX", "Old Name"]);

        mapped.create_folder(&name("Old Name/Sub")).unwrap();
        mapped.select(&name("Old Name/Sub")).unwrap();
        mapped
            .append(&NewMessage {
                body: crate::store::Body::Bytes(b"Subject: x\r\n\r\nbody\r\n"),
                flags: Flags::SEEN,
                date: None,
                tracking: 1,
            })
            .unwrap();
        mapped.flush_appends().unwrap();
        assert_eq!(dest.messages(&name("New/Name/Sub")).unwrap().len(), 1);
        assert!(dest.folder_names().contains(&name("Unrelated")));
        assert!(!dest.folder_names().contains(&name("Old Name/Sub")));
    }
}

use std::sync::Mutex;

use chorus_proto::admin::LimitKind;

use super::*;

/// A store that keeps what it was given, and can be told to fail.
#[derive(Default)]
struct MemoryStore {
    saved: Mutex<BTreeMap<EntryId, AdminEntry>>,
    failing: std::sync::atomic::AtomicBool,
}

impl AdminStore for MemoryStore {
    fn save_admin(
        &self,
        entries: &[(EntryId, AdminEntry)],
    ) -> Result<(), crate::ledger::StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::ledger::StoreError {
                action: "write the admin state to",
                source: "disk full".into(),
            });
        }
        let mut saved = self.saved.lock().unwrap();
        for (id, entry) in entries {
            saved.insert(id.clone(), entry.clone());
        }
        Ok(())
    }
}

fn team_patch(name: &str, rpm: Option<u64>, models: &[&str]) -> TeamPatch {
    TeamPatch {
        name: Some(name.into()),
        policy: PolicyPatch {
            models: Some(models.iter().map(|m| m.to_string()).collect()),
            limits: vec![(LimitKind::Rpm, rpm)],
        },
        metadata: None,
    }
}

fn key_patch(name: &str, team: Option<&str>, rpm: Option<u64>) -> KeyPatch {
    KeyPatch {
        name: Some(name.into()),
        team: team.map(|team| Some(team.to_owned())),
        policy: PolicyPatch {
            models: None,
            limits: vec![(LimitKind::Rpm, rpm)],
        },
        ..KeyPatch::default()
    }
}

fn registry(node_id: &str) -> (AdminRegistry, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    (
        AdminRegistry::new(node_id, Vec::new(), Some(store.clone())),
        store,
    )
}

#[test]
fn keys_are_found_by_hash_id_and_name_until_deleted() {
    let (admin, store) = registry("a");
    let key = admin
        .create_key("key_1".into(), [1; 32], &key_patch("ci", None, Some(5)), 10)
        .unwrap();
    assert_eq!(key.record.policy.limits.rpm, Some(5));
    assert_eq!(admin.key_by_hash(&[1; 32]).unwrap().id, "key_1");
    assert_eq!(admin.key("ci").unwrap().id, "key_1");
    assert_eq!(
        store.saved.lock().unwrap().len(),
        1,
        "stored before it counts"
    );

    let revoked = admin.revoke_key("ci", 20).unwrap();
    assert_eq!(revoked.revoked_ms, Some(20));
    let updated = admin
        .update_key("key_1", &key_patch("ci-2", None, None), 30)
        .unwrap();
    assert_eq!(
        updated.revoked_ms,
        Some(20),
        "an update keeps the revocation"
    );
    assert_eq!(updated.record.policy.limits.rpm, None, "the limit cleared");

    admin.delete_key("ci-2", 40).unwrap();
    assert!(admin.key_by_hash(&[1; 32]).is_none());
    assert!(matches!(
        admin.key("key_1"),
        Err(AdminError::NotFound { .. })
    ));
    assert!(
        admin
            .entry(&EntryId::Key("key_1".into()))
            .unwrap()
            .stamp()
            .wall_ms
            >= 40
    );
}

#[test]
fn a_key_can_only_narrow_its_team_and_names_are_unique() {
    let (admin, _) = registry("a");
    admin
        .create_team(
            "team_1".into(),
            &team_patch("research", Some(100), &["fast"]),
            1,
        )
        .unwrap();
    let error = admin
        .create_key(
            "key_1".into(),
            [1; 32],
            &key_patch("k", Some("research"), Some(101)),
            2,
        )
        .unwrap_err();
    assert!(
        matches!(&error, AdminError::Invalid { param, .. } if param == "rpm"),
        "{error}"
    );
    let key = admin
        .create_key(
            "key_1".into(),
            [1; 32],
            &key_patch("k", Some("research"), Some(50)),
            2,
        )
        .unwrap();
    assert_eq!(key.record.team.as_deref(), Some("team_1"), "stored by id");

    let widen = admin.update_key("k", &key_patch("k", None, Some(500)), 3);
    assert!(
        matches!(widen, Err(AdminError::Invalid { .. })),
        "still in its team"
    );

    let duplicate = admin.create_key("key_2".into(), [2; 32], &key_patch("k", None, None), 4);
    assert!(matches!(duplicate, Err(AdminError::Conflict { .. })));
    let unknown_team = admin.create_key(
        "key_3".into(),
        [3; 32],
        &key_patch("x", Some("nope"), None),
        5,
    );
    assert!(matches!(unknown_team, Err(AdminError::Invalid { param, .. }) if param == "team"));

    let busy = admin.delete_team("research", 6);
    assert!(
        matches!(busy, Err(AdminError::Conflict { .. })),
        "the team has a key"
    );
    admin.delete_key("k", 7).unwrap();
    admin.delete_team("research", 8).unwrap();
    assert!(admin.team("team_1").is_none());
}

#[test]
fn a_change_that_cannot_be_stored_is_not_made() {
    let (admin, store) = registry("a");
    store
        .failing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let failed = admin.create_team("team_1".into(), &team_patch("t", None, &[]), 1);
    assert!(matches!(failed, Err(AdminError::Store(_))));
    assert!(admin.team("team_1").is_none());
}

#[test]
fn two_nodes_exchanging_entries_end_equal_and_a_deletion_wins() {
    let (a, _) = registry("a");
    let (b, b_store) = registry("b");
    a.create_key("key_1".into(), [1; 32], &key_patch("k", None, Some(5)), 100)
        .unwrap();
    let exchange = |from: &AdminRegistry, to: &AdminRegistry| {
        for id in from.ids() {
            to.observe(id.clone(), from.entry(&id).unwrap());
        }
    };
    exchange(&a, &b);
    b.save_observed();
    assert_eq!(
        b_store.saved.lock().unwrap().len(),
        1,
        "merged entries are stored"
    );
    assert_eq!(
        b.key_by_hash(&[1; 32]).unwrap().record.policy.limits.rpm,
        Some(5)
    );

    // Concurrent: b revokes, a raises the limit later by its clock.
    b.revoke_key("k", 200).unwrap();
    a.update_key("k", &key_patch("k", None, Some(9)), 300)
        .unwrap();
    exchange(&a, &b);
    exchange(&b, &a);
    for node in [&a, &b] {
        let key = node.key_by_hash(&[1; 32]).unwrap();
        assert_eq!(key.record.policy.limits.rpm, Some(9));
        assert_eq!(key.revoked_ms, Some(200), "revoked everywhere");
    }
    // A deletion, even stamped before a later edit, wins.
    b.delete_key("k", 50).unwrap();
    exchange(&b, &a);
    assert!(a.key_by_hash(&[1; 32]).is_none());
    assert!(!a.observe(
        EntryId::Key("key_1".into()),
        b.entry(&EntryId::Key("key_1".into())).unwrap()
    ));
}

#[test]
fn a_restarted_node_starts_from_its_store() {
    let (admin, store) = registry("a");
    admin
        .create_team("team_1".into(), &team_patch("t", Some(10), &[]), 1)
        .unwrap();
    let restored: Vec<_> = store.saved.lock().unwrap().clone().into_iter().collect();
    let again = AdminRegistry::new("a", restored, None);
    assert_eq!(
        again.find_team("t").unwrap().record.policy.limits.rpm,
        Some(10)
    );
    let next = again
        .update_team("t", &team_patch("t", Some(20), &[]), 0)
        .unwrap();
    assert!(
        next.stamp > admin.find_team("t").unwrap().stamp,
        "stamps go on after the stored ones, whatever the clock says"
    );
}

//! The gossip actor's exchange over an in-memory network: several runs'
//! published states, each with a liveness the test sets, read the way
//! chitchat delivers them (changed entries of runs it still shares).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chorus_proto::counter::{CounterKey, CounterKind};
use futures::future::BoxFuture;

use super::*;
use crate::ledger::RunId;
use crate::testing::deployment;

type State = BTreeMap<(Section, String), String>;

#[derive(Default)]
struct Network {
    states: Mutex<BTreeMap<RunId, State>>,
    liveness: Mutex<BTreeMap<RunId, Liveness>>,
}

impl Network {
    fn set_liveness(&self, run: &RunId, liveness: Liveness) {
        self.liveness.lock().unwrap().insert(run.clone(), liveness);
    }

    /// Every counter entry any run publishes about `node_id`'s runs.
    fn counter_entries_about(&self, node_id: &str) -> Vec<(RunId, String)> {
        let states = self.states.lock().unwrap();
        states
            .iter()
            .flat_map(|(publisher, state)| {
                state
                    .keys()
                    .filter(move |(section, key)| {
                        *section == Section::Counters && key.starts_with(&format!("{node_id}:"))
                    })
                    .map(move |(_, key)| (publisher.clone(), key.clone()))
            })
            .collect()
    }
}

/// One run's view of the network.
struct MemoryBus {
    network: Arc<Network>,
    me: RunId,
    seen: Mutex<HashMap<(RunId, Section, String), String>>,
}

impl GossipBus for MemoryBus {
    fn publish(&self, changes: Vec<Change>) -> BoxFuture<'_, ()> {
        let mut states = self.network.states.lock().unwrap();
        let state = states.entry(self.me.clone()).or_default();
        for change in changes {
            match change {
                Change::Set {
                    section,
                    key,
                    value,
                } => {
                    state.insert((section, key), value);
                }
                Change::Delete { section, key } => {
                    state.remove(&(section, key));
                }
            }
        }
        Box::pin(async {})
    }

    fn read(&self) -> BoxFuture<'_, GossipRead> {
        let liveness = self.network.liveness.lock().unwrap().clone();
        let states = self.network.states.lock().unwrap();
        let mut seen = self.seen.lock().unwrap();
        let mut changes = Vec::new();
        for (publisher, state) in states.iter() {
            let shared = liveness.get(publisher) != Some(&Liveness::Departed);
            if *publisher == self.me || !shared {
                continue;
            }
            for ((section, key), value) in state {
                let id = (publisher.clone(), *section, key.clone());
                if seen.get(&id) != Some(value) {
                    seen.insert(id, value.clone());
                    changes.push(Observed {
                        publisher: publisher.clone(),
                        section: *section,
                        key: key.clone(),
                        value: value.clone(),
                    });
                }
            }
        }
        let runs = liveness
            .into_iter()
            .map(|(run, liveness)| RunStatus { run, liveness })
            .collect();
        Box::pin(async move { GossipRead { runs, changes } })
    }

    fn news(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

fn run(node_id: &str, generation: u64) -> RunId {
    RunId {
        node_id: node_id.into(),
        generation,
    }
}

/// A node on the network: its ledger, one deployment `p/m`, and the
/// state its gossip actor would keep.
struct TestNode {
    state: GossipState,
    deployment: DeploymentHandle,
}

impl TestNode {
    fn start(
        network: &Arc<Network>,
        me: RunId,
        restored: Vec<crate::ledger::Contribution>,
    ) -> Self {
        let admin = AdminRegistry::new(&me.node_id, Vec::new(), None);
        Self::start_with_admin(network, me, restored, admin)
    }

    fn start_with_admin(
        network: &Arc<Network>,
        me: RunId,
        restored: Vec<crate::ledger::Contribution>,
        admin: AdminRegistry,
    ) -> Self {
        network.set_liveness(&me, Liveness::Alive);
        let ledger = Ledger::new(me.clone(), restored);
        let deployment = deployment("p/m", &ledger);
        let bus = Arc::new(MemoryBus {
            network: network.clone(),
            me,
            seen: Mutex::default(),
        });
        let args = GossipArgs {
            bus,
            deployments: vec![deployment.clone()],
            limiter: crate::limits::Limiter::new(ledger.clone()),
            ledger,
            admin,
            interval: Duration::from_secs(60),
            settle: Duration::ZERO,
        };
        TestNode {
            state: GossipState {
                counters: CounterSection::new(args.settle),
                deployments: DeploymentSection::default(),
                admin: AdminSection::new(Instant::now()),
                load: LoadSection::default(),
                news_watch: None,
                args,
            },
            deployment,
        }
    }

    fn count_calls(&self, calls: u64) {
        for _ in 0..calls {
            let ended = crate::deployment::CallEnded {
                outcome: crate::deployment::CallOutcome::Completed,
                latency: Duration::from_millis(5),
                ttft: None,
                usage: None,
            };
            self.deployment.record(ended, unix_millis());
        }
    }

    fn calls(&self) -> u64 {
        self.state
            .args
            .ledger
            .value(&CounterKey::new(CounterKind::Calls, "p/m"), unix_millis())
    }

    async fn exchange(&mut self) {
        exchange(&mut self.state, Occasion::Round).await;
    }
}

async fn rounds(nodes: &mut [&mut TestNode], count: usize) {
    for _ in 0..count {
        for node in nodes.iter_mut() {
            node.exchange().await;
        }
    }
}

#[tokio::test]
async fn nodes_add_up_each_others_counts_and_see_each_others_load() {
    let network = Arc::new(Network::default());
    let mut a = TestNode::start(&network, run("a", 1), Vec::new());
    let mut b = TestNode::start(&network, run("b", 1), Vec::new());
    a.count_calls(2);
    b.count_calls(3);
    let _busy = b.deployment.start_call(0);
    rounds(&mut [&mut a, &mut b], 2).await;
    assert_eq!((a.calls(), b.calls()), (5, 5));
    let view = a.deployment.cluster_stats().unwrap();
    assert_eq!((view.nodes, view.in_flight, view.finished), (2, 1, 5));
}

#[tokio::test]
async fn the_counts_of_a_departed_run_are_republished_once_and_reach_a_late_joiner() {
    let network = Arc::new(Network::default());
    let mut a = TestNode::start(&network, run("a", 1), Vec::new());
    let mut b = TestNode::start(&network, run("b", 1), Vec::new());
    let mut c = TestNode::start(&network, run("c", 1), Vec::new());
    c.count_calls(4);
    rounds(&mut [&mut a, &mut b, &mut c], 2).await;
    assert_eq!(a.calls(), 4);

    // c dies; while gossip still shares its state nobody republishes it.
    network.set_liveness(&run("c", 1), Liveness::Dead);
    rounds(&mut [&mut a, &mut b], 1).await;
    let entries = network.counter_entries_about("c");
    assert!(!entries.is_empty());
    assert!(
        entries
            .iter()
            .all(|(publisher, _)| *publisher == run("c", 1)),
        "c's own keys only: {entries:?}"
    );

    // Once gossip forgets c, the lowest live node (a) republishes it.
    network.set_liveness(&run("c", 1), Liveness::Departed);
    rounds(&mut [&mut a, &mut b], 1).await;
    let publishers: Vec<RunId> = network
        .counter_entries_about("c")
        .into_iter()
        .map(|(publisher, _)| publisher)
        .filter(|publisher| *publisher != run("c", 1))
        .collect();
    assert!(!publishers.is_empty());
    assert!(
        publishers.iter().all(|publisher| *publisher == run("a", 1)),
        "{publishers:?}"
    );

    // A node with a fresh store joins and learns c's count from a.
    let mut d = TestNode::start(&network, run("d", 1), Vec::new());
    rounds(&mut [&mut a, &mut b, &mut d], 2).await;
    assert_eq!(d.calls(), 4);

    // c comes back with a lost store, folds what a republished, and a
    // deletes its copies once c's tallies say so.
    let mut c2 = TestNode::start(&network, run("c", 2), Vec::new());
    c2.count_calls(1);
    rounds(&mut [&mut a, &mut b, &mut c2, &mut d], 3).await;
    for node in [&a, &b, &c2, &d] {
        assert_eq!(node.calls(), 5);
    }
    let about_c: Vec<_> = network
        .counter_entries_about("c")
        .into_iter()
        .filter(|(publisher, _)| publisher.node_id != "c")
        .collect();
    assert_eq!(about_c, [], "no copies left once c's run 2 folded run 1");
}

#[tokio::test]
async fn a_node_does_not_republish_runs_before_it_has_settled() {
    let network = Arc::new(Network::default());
    // `a` restarts with its store holding b's tally; b is alive but `a`
    // has not heard from it yet.
    let restored = vec![crate::ledger::Contribution {
        key: CounterKey::new(CounterKind::Calls, "p/m"),
        run: run("b", 1),
        tally: chorus_proto::counter::Tally::new(chorus_proto::counter::Buckets::new(
            chorus_proto::counter::Window::Lifetime,
            0,
            6,
        )),
    }];
    let mut a = TestNode::start(&network, run("a", 2), restored);
    a.state.counters = CounterSection::new(Duration::from_secs(3600));
    rounds(&mut [&mut a], 2).await;
    assert_eq!(network.counter_entries_about("b"), []);
    assert_eq!(a.calls(), 6);
}

impl TestNode {
    fn admin(&self) -> &AdminRegistry {
        &self.state.args.admin
    }

    fn knows_key(&self, hash: u8) -> bool {
        self.admin().key_by_hash(&[hash; 32]).is_some()
    }
}

/// Creates key `key_1`, named `k`, whose hash is all ones.
fn create_key_1(admin: &AdminRegistry) {
    let patch = crate::admin::KeyPatch {
        name: Some("k".into()),
        ..Default::default()
    };
    admin
        .create_key("key_1".into(), [1; 32], &patch, unix_millis())
        .unwrap();
}

/// Which runs publish register `entry` (`key:<id>`).
fn admin_publishers(network: &Network, entry: &str) -> Vec<RunId> {
    let states = network.states.lock().unwrap();
    states
        .iter()
        .filter(|(_, state)| state.contains_key(&(Section::Admin, entry.to_owned())))
        .map(|(run, _)| run.clone())
        .collect()
}

#[tokio::test]
async fn admin_changes_have_one_publisher_and_outlive_it() {
    let network = Arc::new(Network::default());
    let mut a = TestNode::start(&network, run("a", 1), Vec::new());
    let mut b = TestNode::start(&network, run("b", 1), Vec::new());
    let mut c = TestNode::start(&network, run("c", 1), Vec::new());
    create_key_1(c.admin());
    rounds(&mut [&mut a, &mut b, &mut c], 2).await;
    assert!(a.knows_key(1) && b.knows_key(1));
    assert_eq!(
        admin_publishers(&network, "key:key_1"),
        [run("c", 1)],
        "only its author"
    );

    // c is not heard from for a moment: gossip still carries its state,
    // and nobody copies its registers.
    network.set_liveness(&run("c", 1), Liveness::Dead);
    rounds(&mut [&mut a, &mut b], 1).await;
    assert_eq!(admin_publishers(&network, "key:key_1"), [run("c", 1)]);

    // c is gone: the lowest live node takes over; a node that joins with
    // a fresh store still learns the key.
    network.set_liveness(&run("c", 1), Liveness::Departed);
    rounds(&mut [&mut a, &mut b], 1).await;
    assert!(admin_publishers(&network, "key:key_1").contains(&run("a", 1)));
    let mut d = TestNode::start(&network, run("d", 1), Vec::new());
    rounds(&mut [&mut a, &mut b, &mut d], 2).await;
    assert!(d.knows_key(1));

    // c returns with its store and publishes its own change again; a hands
    // it back once it sees c's copy covers its own.
    let restored: Vec<_> = c
        .admin()
        .ids()
        .into_iter()
        .map(|id| {
            let entry = c.admin().entry(&id).unwrap();
            (id, entry)
        })
        .collect();
    network.states.lock().unwrap().remove(&run("c", 1));
    let admin = AdminRegistry::new("c", restored, None);
    let mut c2 = TestNode::start_with_admin(&network, run("c", 2), Vec::new(), admin);
    rounds(&mut [&mut a, &mut b, &mut c2, &mut d], 3).await;
    assert_eq!(admin_publishers(&network, "key:key_1"), [run("c", 2)]);

    // A revocation on d wins everywhere, and stays published by d, its author.
    d.admin().revoke_key("k", unix_millis()).unwrap();
    rounds(&mut [&mut a, &mut b, &mut c2, &mut d], 3).await;
    for node in [&a, &b, &c2, &d] {
        assert!(node
            .admin()
            .key_by_hash(&[1; 32])
            .unwrap()
            .revoked_ms
            .is_some());
    }
    assert_eq!(admin_publishers(&network, "key:key_1"), [run("d", 1)]);
}

/// A bus whose news the test announces.
struct NewsBus {
    inner: MemoryBus,
    news: tokio::sync::Notify,
}

impl GossipBus for NewsBus {
    fn publish(&self, changes: Vec<Change>) -> BoxFuture<'_, ()> {
        self.inner.publish(changes)
    }

    fn read(&self) -> BoxFuture<'_, GossipRead> {
        self.inner.read()
    }

    fn news(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.news.notified())
    }
}

#[tokio::test]
async fn admin_changes_are_exchanged_at_once_not_at_the_next_interval() {
    let network = Arc::new(Network::default());
    let bus = |node_id: &str| {
        network.set_liveness(&run(node_id, 1), Liveness::Alive);
        Arc::new(NewsBus {
            inner: MemoryBus {
                network: network.clone(),
                me: run(node_id, 1),
                seen: Mutex::default(),
            },
            news: tokio::sync::Notify::new(),
        })
    };
    let start = |bus: Arc<NewsBus>, node_id: &str| {
        let ledger = Ledger::new(run(node_id, 1), Vec::new());
        let admin = AdminRegistry::new(node_id, Vec::new(), None);
        let args = GossipArgs {
            bus,
            deployments: Vec::new(),
            limiter: crate::limits::Limiter::new(ledger.clone()),
            ledger,
            admin: admin.clone(),
            // Only the first exchange comes from the interval.
            interval: Duration::from_secs(3600),
            settle: Duration::ZERO,
        };
        async move {
            let (actor, _) = Actor::spawn(None, GossipActor, args).await.unwrap();
            (actor, admin)
        }
    };
    let (a_actor, a) = start(bus("a"), "a").await;
    let b_bus = bus("b");
    let (b_actor, b) = start(b_bus.clone(), "b").await;
    create_key_1(&a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin_publishers(&network, "key:key_1").is_empty() {
        assert!(
            Instant::now() < deadline,
            "a local change was not published"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b_bus.news.notify_one();
    while b.key_by_hash(&[1; 32]).is_none() {
        assert!(Instant::now() < deadline, "news was not read");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a_actor.stop(None);
    b_actor.stop(None);
}

#[tokio::test]
async fn an_author_back_without_its_store_gets_its_changes_back() {
    let network = Arc::new(Network::default());
    let mut a = TestNode::start(&network, run("a", 1), Vec::new());
    let mut c = TestNode::start(&network, run("c", 1), Vec::new());
    create_key_1(c.admin());
    rounds(&mut [&mut a, &mut c], 2).await;
    network.set_liveness(&run("c", 1), Liveness::Departed);
    network.states.lock().unwrap().remove(&run("c", 1));
    rounds(&mut [&mut a], 1).await;
    assert_eq!(admin_publishers(&network, "key:key_1"), [run("a", 1)]);

    // c returns with an empty store: a must not hand the key back to a
    // run that has never published it.
    let mut c2 = TestNode::start(&network, run("c", 2), Vec::new());
    rounds(&mut [&mut a, &mut c2], 3).await;
    assert!(c2.knows_key(1));
    assert_eq!(admin_publishers(&network, "key:key_1"), [run("c", 2)]);
}

#[tokio::test]
async fn a_leaving_node_with_counts_waiting_asks_for_longer() {
    let network = Arc::new(Network::default());
    let me = run("a", 1);
    network.set_liveness(&me, Liveness::Alive);
    let ledger = Ledger::new(me.clone(), Vec::new());
    let args = GossipArgs {
        bus: Arc::new(MemoryBus {
            network: network.clone(),
            me,
            seen: Mutex::default(),
        }),
        deployments: Vec::new(),
        limiter: crate::limits::Limiter::new(ledger.clone()),
        ledger: ledger.clone(),
        admin: AdminRegistry::new("a", Vec::new(), None),
        interval: Duration::from_millis(100),
        settle: Duration::ZERO,
    };
    let (actor, _) = Actor::spawn(None, GossipActor, args).await.unwrap();
    let leave = || async {
        match actor.call(GossipMsg::FinalExchange, None).await.unwrap() {
            ractor::rpc::CallResult::Success(longer) => longer,
            other => panic!("{other:?}"),
        }
    };
    ledger
        .counter(CounterKey::new(CounterKind::RequestsMinute, "key:k"))
        .add(1, unix_millis());
    assert_eq!(
        leave().await,
        Duration::ZERO,
        "one key's counts fit one exchange"
    );
    // 5,000 keys' counts, some 300 KB: five exchanges' worth.
    for index in 0..5_000 {
        ledger
            .counter(CounterKey::new(
                CounterKind::RequestsMinute,
                format!("key:{index:05}-and-a-long-enough-name"),
            ))
            .add(1, unix_millis());
    }
    let longer = leave().await;
    assert!(longer >= Duration::from_millis(300), "{longer:?}");
    actor.stop(None);
}

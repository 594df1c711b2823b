use chorus_proto::counter::{Buckets, CounterKey, CounterKind, Tally, Window};

use super::*;
use crate::ledger::{Contribution, RunId};

const IDLE_AFTER_MS: u64 = 120_000;
/// 30 s into some minute, at noon some day.
const NOW: u64 = 20_000 * 86_400_000 + 12 * 3_600_000 + 30_000;

fn limiter(node_id: &str) -> (Limiter, Ledger) {
    let ledger = Ledger::new(
        RunId {
            node_id: node_id.into(),
            generation: 1,
        },
        Vec::new(),
    );
    (Limiter::new(ledger.clone()), ledger)
}

fn key(limits: &Limits) -> Holder<'_> {
    Holder {
        subject: "key:k",
        team: None,
        limits,
    }
}

/// What a gossip exchange does to this node's counts: publishes them.
fn publish(ledger: &Ledger) {
    for subject in ledger.unpublished() {
        subject.take();
    }
}

fn one_token() -> Reservation {
    Reservation {
        tokens: 1,
        cost_micros: 0,
    }
}

#[test]
fn requests_per_minute_count_down_then_refuse_with_a_wait() {
    let (limiter, _) = limiter("a");
    let limits = Limits {
        rpm: Some(3),
        ..Limits::default()
    };
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let admission = limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
        remaining.push(admission.headers().requests.unwrap().remaining);
        admission.settle(one_token(), NOW);
    }
    assert_eq!(remaining, [2, 1, 0]);
    match limiter.admit(&[key(&limits)], one_token(), NOW) {
        Err(Refusal::RateLimited {
            kind: RateKind::Requests,
            limit: 3,
            retry_after_ms: wait,
            headers,
            ..
        }) => {
            // All three in the slice NOW begins: until it leaves the
            // minute, 60 s after its end.
            assert_eq!(wait, 62_000);
            assert_eq!(headers.requests.unwrap().remaining, 0);
        }
        other => panic!("not refused: {other:?}"),
    }
    assert!(limiter
        .admit(&[key(&limits)], one_token(), NOW + 61_999)
        .is_err());
    assert!(limiter
        .admit(&[key(&limits)], one_token(), NOW + 62_000)
        .is_ok());
}

#[test]
fn tokens_reserved_are_given_back_when_the_call_used_fewer() {
    let (limiter, _) = limiter("a");
    let limits = Limits {
        tpm: Some(1_000),
        ..Limits::default()
    };
    let big = Reservation {
        tokens: 800,
        cost_micros: 0,
    };
    let first = limiter.admit(&[key(&limits)], big, NOW).unwrap();
    assert!(
        limiter.admit(&[key(&limits)], big, NOW).is_err(),
        "800 + 800 > 1000"
    );
    first.settle(
        Reservation {
            tokens: 100,
            cost_micros: 0,
        },
        NOW + 1,
    );
    let second = limiter.admit(&[key(&limits)], big, NOW + 2).unwrap();
    assert_eq!(
        second.headers().tokens.unwrap().remaining,
        1_000 - 100 - 800
    );
    let too_big = Reservation {
        tokens: 1_001,
        cost_micros: 0,
    };
    assert!(
        matches!(
            limiter.admit(&[key(&limits)], too_big, NOW),
            Err(Refusal::TooLarge { need: 1_001, .. })
        ),
        "it never fits"
    );
}

#[test]
fn parallel_requests_are_limited_and_a_dropped_admission_frees_its_slot() {
    let (limiter, _) = limiter("a");
    let limits = Limits {
        max_parallel: Some(2),
        ..Limits::default()
    };
    let first = limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    let _second = limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    assert!(matches!(
        limiter.admit(&[key(&limits)], one_token(), NOW),
        Err(Refusal::RateLimited {
            kind: RateKind::Parallel,
            ..
        })
    ));
    drop(first);
    assert!(limiter.admit(&[key(&limits)], one_token(), NOW).is_ok());
    // Another node's requests in flight count too, until it dies, or
    // until its figure is not refreshed.
    let b = RunId {
        node_id: "b".into(),
        generation: 1,
    };
    limiter.note_remote_in_flight(&b, "key:k", 5, NOW);
    assert!(limiter.admit(&[key(&limits)], one_token(), NOW).is_err());
    limiter.keep_remote_runs(|run| run.node_id != "b", NOW);
    let third = limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    drop(third);
    limiter.note_remote_in_flight(&b, "key:k", 5, NOW);
    limiter.keep_remote_runs(|_| true, NOW + 1_000);
    assert!(limiter.admit(&[key(&limits)], one_token(), NOW).is_err());
    limiter.keep_remote_runs(|_| true, NOW + REMOTE_LOAD_TTL_MS);
    assert!(limiter.admit(&[key(&limits)], one_token(), NOW).is_ok());
}

#[test]
fn budgets_reserve_then_settle_and_an_unsettled_request_keeps_its_reservation() {
    let (limiter, _) = limiter("a");
    let limits = Limits {
        budget_daily_micros: Some(1_000_000),
        budget_monthly_micros: Some(5_000_000),
        ..Limits::default()
    };
    let estimate = Reservation {
        tokens: 10,
        cost_micros: 400_000,
    };
    let first = limiter.admit(&[key(&limits)], estimate, NOW).unwrap();
    let second = limiter.admit(&[key(&limits)], estimate, NOW).unwrap();
    match limiter.admit(&[key(&limits)], estimate, NOW) {
        Err(Refusal::OverBudget {
            period: Period::Day,
            spent_micros: 800_000,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    first.settle(
        Reservation {
            tokens: 10,
            cost_micros: 100_000,
        },
        NOW,
    );
    drop(second);
    let subject = limiter.get("key:k").unwrap();
    assert_eq!(
        subject.spend_micros(NOW),
        (500_000, 500_000),
        "the settled cost and the kept reservation"
    );
    // The next day starts afresh; the month goes on.
    assert_eq!(subject.spend_micros(NOW + 86_400_000).0, 0);
}

#[test]
fn a_team_limit_holds_for_the_sum_of_its_keys_and_a_refusal_charges_nothing() {
    let (limiter, _) = limiter("a");
    let key_limits = Limits {
        rpm: Some(10),
        ..Limits::default()
    };
    let team_limits = Limits {
        rpm: Some(3),
        ..Limits::default()
    };
    let holders = |subject| {
        [
            Holder {
                subject,
                team: None,
                limits: &key_limits,
            },
            Holder {
                subject: "team:t",
                team: Some("t"),
                limits: &team_limits,
            },
        ]
    };
    let _held: Vec<Admission> = ["key:a", "key:b", "key:a"]
        .into_iter()
        .map(|subject| limiter.admit(&holders(subject), one_token(), NOW).unwrap())
        .collect();
    match limiter.admit(&holders("key:b"), one_token(), NOW) {
        Err(Refusal::RateLimited {
            label, limit: 3, ..
        }) => assert_eq!(label, "team `t`"),
        other => panic!("{other:?}"),
    }
    let key_b = limiter.get("key:b").unwrap();
    assert_eq!(key_b.in_flight(), 1, "the refused request took nothing");
}

#[test]
fn other_nodes_requests_count_as_gossip_brings_them() {
    let (limiter, ledger) = limiter("a");
    let limits = Limits {
        rpm: Some(5),
        ..Limits::default()
    };
    limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    ledger.observe(Contribution {
        key: CounterKey::new(CounterKind::RequestsMinute, "key:k"),
        run: RunId {
            node_id: "b".into(),
            generation: 1,
        },
        tally: Tally::new(Buckets::new(Window::Minute, Window::Minute.epoch(NOW), 4)),
    });
    assert!(
        limiter.admit(&[key(&limits)], one_token(), NOW).is_err(),
        "1 here + 4 on b"
    );
}

#[test]
fn concurrent_admissions_never_take_more_than_the_limit() {
    let (limiter, _) = limiter("a");
    let limits = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..100 {
                    if let Ok(admission) = limiter.admit(&[key(&limits)], one_token(), NOW) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        admission.settle(one_token(), NOW);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
}

#[test]
fn idle_subjects_are_let_go_but_their_counts_stay() {
    let (limiter, _) = limiter("a");
    let limits = Limits {
        rpm: Some(2),
        ..Limits::default()
    };
    limiter
        .admit(&[key(&limits)], one_token(), NOW)
        .unwrap()
        .settle(one_token(), NOW);
    let subject = limiter.held().pop().unwrap();
    assert!(!limiter.release_if_idle(&subject, IDLE_AFTER_MS, NOW + 1_000));
    assert!(limiter.release_if_idle(&subject, IDLE_AFTER_MS, NOW + IDLE_AFTER_MS));
    assert!(limiter.is_empty());
    let again = limiter
        .admit(&[key(&limits)], one_token(), NOW + 1)
        .unwrap();
    assert_eq!(
        again.headers().requests.unwrap().remaining,
        0,
        "still counted"
    );
}

#[test]
fn between_exchanges_a_node_takes_only_its_share_of_what_is_left() {
    let (limiter, ledger) = limiter("a");
    let limits = Limits {
        rpm: Some(10),
        ..Limits::default()
    };
    // b is alive and has counted 2 this minute.
    ledger.set_live_peers(1);
    ledger.observe(Contribution {
        key: CounterKey::new(CounterKind::RequestsMinute, "key:k"),
        run: RunId {
            node_id: "b".into(),
            generation: 1,
        },
        tally: Tally::new(Buckets::new(Window::Minute, Window::Minute.epoch(NOW), 2)),
    });
    limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    publish(&ledger);
    let admitted = (0..10)
        .filter(|_| limiter.admit(&[key(&limits)], one_token(), NOW).is_ok())
        .count();
    assert_eq!(admitted, 4, "(10 − 3) / 2, rounded up");
    match limiter.admit(&[key(&limits)], one_token(), NOW) {
        Err(Refusal::RateLimited {
            retry_after_ms: 1_000,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // The next exchange shows what is left: 10 − 2 − 5 = 3, shared again.
    publish(&ledger);
    let admitted = (0..10)
        .filter(|_| limiter.admit(&[key(&limits)], one_token(), NOW).is_ok())
        .count();
    assert_eq!(admitted, 2, "3 / 2, rounded up");
}

/// Whether a subject waiting to be published asked to go first.
fn asks_to_go_first(ledger: &Ledger) -> bool {
    ledger
        .unpublished()
        .iter()
        .any(|subject| subject.is_urgent())
}

#[test]
fn a_subject_past_half_a_limit_asks_gossip_to_publish_it_first() {
    let (limiter, ledger) = limiter("a");
    let limits = Limits {
        rpm: Some(4),
        ..Limits::default()
    };
    let urgent = || asks_to_go_first(&ledger);
    limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    assert!(!urgent(), "1 of 4: far from the limit");
    publish(&ledger);
    limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    assert!(urgent(), "2 of 4");
}

#[test]
fn a_node_past_half_its_share_asks_gossip_to_publish_first() {
    let (limiter, ledger) = limiter("a");
    ledger.set_live_peers(4);
    let limits = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    let urgent = || asks_to_go_first(&ledger);
    // Its share: 100 ÷ 5 = 20, of which 10 taken are not yet half.
    for _ in 0..10 {
        limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    }
    assert!(!urgent());
    limiter.admit(&[key(&limits)], one_token(), NOW).unwrap();
    assert!(urgent(), "11 of a share of 20");
}

#[test]
fn only_subjects_held_to_max_parallel_gossip_their_requests_in_flight() {
    let (limiter, _) = limiter("a");
    let rpm = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    let _admission = limiter.admit(&[key(&rpm)], one_token(), NOW).unwrap();
    assert_eq!(limiter.local_in_flight(), []);
    let parallel = Limits {
        max_parallel: Some(5),
        ..rpm
    };
    let _admission = limiter.admit(&[key(&parallel)], one_token(), NOW).unwrap();
    assert_eq!(limiter.local_in_flight(), [("key:k".to_owned(), 2)]);
}

/// Waits up to two seconds for `done`.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_key_actor_keeps_each_key_in_use_until_it_is_idle() {
    use ractor::Actor;
    let (limiter, _) = limiter("a");
    let args = LimitsArgs {
        limiter: limiter.clone(),
        idleness: Idleness {
            after: std::time::Duration::from_millis(100),
            check_every: std::time::Duration::from_millis(10),
        },
    };
    let (limits_actor, _) = Actor::spawn(None, LimitsActor, args.clone()).await.unwrap();
    let limits = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    let now = unix_millis();
    let admission = limiter.admit(&[key(&limits)], one_token(), now).unwrap();
    eventually("a key actor spawned on first use", || {
        limits_actor.get_children().len() == 1
    })
    .await;
    // In flight: kept, however long.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(limiter.len(), 1);
    admission.settle(one_token(), unix_millis());
    eventually("idle: let go and the actor stopped", || {
        limiter.is_empty() && limits_actor.get_children().is_empty()
    })
    .await;

    // A restarted supervisor takes over the keys held already.
    let _held = limiter.admit(&[key(&limits)], one_token(), unix_millis());
    eventually("kept again", || limits_actor.get_children().len() == 1).await;
    limits_actor.stop(None);
    let (successor, _) = Actor::spawn(None, LimitsActor, args).await.unwrap();
    eventually("taken over", || successor.get_children().len() == 1).await;
    successor.stop(None);
}

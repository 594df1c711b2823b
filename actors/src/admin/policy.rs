//! Changes to keys and teams as the admin API and CLI describe them
//! ([`KeyPatch`], [`TeamPatch`]), and the rule every key obeys: it can only
//! narrow its team. A limit above the team's, or a model outside the
//! team's list, is refused with an error naming the field.

use chorus_proto::admin::{KeyRecord, LimitKind, Metadata, Policy, TeamRecord};

use crate::ledger::StoreError;

/// What is wrong with an admin change, for the API to answer with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field of the change is not acceptable (400, naming the field).
    #[error("{message}")]
    Invalid { param: String, message: String },
    /// No live key or team by that id or name (404).
    #[error("{what} `{id}` does not exist")]
    NotFound { what: &'static str, id: String },
    /// The change clashes with the state: a duplicate name, a team that
    /// still has keys (409).
    #[error("{message}")]
    Conflict { param: String, message: String },
    /// The change could not be stored, so it was not made (503).
    #[error("the change could not be stored: {0}")]
    Store(#[from] StoreError),
}

impl AdminError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        AdminError::Invalid {
            param: param.to_owned(),
            message: message.into(),
        }
    }
}

/// A change to a policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyPatch {
    pub models: Option<Vec<String>>,
    /// Limits to set (`Some`) or clear (`None`).
    pub limits: Vec<(LimitKind, Option<u64>)>,
}

impl PolicyPatch {
    fn apply(&self, policy: &mut Policy) {
        if let Some(models) = &self.models {
            policy.models.clone_from(models);
        }
        for (kind, value) in &self.limits {
            policy.limits.set(*kind, *value);
        }
    }
}

/// A change to a key (or, applied to nothing, a new key); `None` leaves a
/// field as it is, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPatch {
    pub name: Option<String>,
    /// The team's id or name.
    pub team: Option<Option<String>>,
    pub policy: PolicyPatch,
    pub expires_ms: Option<Option<u64>>,
    pub metadata: Option<Metadata>,
}

impl KeyPatch {
    /// `record` with the patch applied, the team already resolved to its id.
    pub(super) fn apply(&self, record: &mut KeyRecord, team_id: Option<Option<String>>) {
        if let Some(name) = &self.name {
            record.name.clone_from(name);
        }
        if let Some(team) = team_id {
            record.team = team;
        }
        self.policy.apply(&mut record.policy);
        if let Some(expires_ms) = self.expires_ms {
            record.expires_ms = expires_ms;
        }
        if let Some(metadata) = &self.metadata {
            record.metadata.clone_from(metadata);
        }
    }
}

/// A change to a team (or, applied to nothing, a new team).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamPatch {
    pub name: Option<String>,
    pub policy: PolicyPatch,
    pub metadata: Option<Metadata>,
}

impl TeamPatch {
    pub(super) fn apply(&self, record: &mut TeamRecord) {
        if let Some(name) = &self.name {
            record.name.clone_from(name);
        }
        self.policy.apply(&mut record.policy);
        if let Some(metadata) = &self.metadata {
            record.metadata.clone_from(metadata);
        }
    }
}

/// A limit as people read it: USD for budgets, a count otherwise.
pub fn show_limit(kind: LimitKind, value: u64) -> String {
    if kind.is_budget() {
        format!("USD {}", show_usd(value))
    } else {
        value.to_string()
    }
}

/// Micro-dollars as a USD amount without trailing zeros: `1.5`, `0.000001`.
pub fn show_usd(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Refuses a key policy that is wider than its team's in any field.
pub fn check_within_team(key: &Policy, team: &TeamRecord) -> Result<(), AdminError> {
    for kind in LimitKind::ALL {
        if let (Some(own), Some(team_limit)) = (key.limits.get(kind), team.policy.limits.get(kind))
        {
            if own > team_limit {
                return Err(AdminError::invalid(
                    kind.field(),
                    format!(
                        "`{}` {} is above the {} of team `{}`: a key can only narrow its team",
                        kind.field(),
                        show_limit(kind, own),
                        show_limit(kind, team_limit),
                        team.name
                    ),
                ));
            }
        }
    }
    if team.policy.models.is_empty() {
        return Ok(());
    }
    if let Some(outside) = key
        .models
        .iter()
        .find(|model| !team.policy.models.contains(model))
    {
        return Err(AdminError::invalid(
            "models",
            format!(
                "model `{outside}` is not among the models of team `{}` ({}): a key can only narrow its team",
                team.name,
                team.policy.models.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chorus_proto::admin::Limits;

    use super::*;

    fn team() -> TeamRecord {
        TeamRecord {
            name: "research".into(),
            policy: Policy {
                models: vec!["fast".into(), "smart".into()],
                limits: Limits {
                    rpm: Some(100),
                    budget_daily_micros: Some(5_000_000),
                    ..Limits::default()
                },
            },
            metadata: Metadata::new(),
            created_ms: 0,
        }
    }

    fn param_of(result: Result<(), AdminError>) -> String {
        match result {
            Err(AdminError::Invalid { param, .. }) => param,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_key_may_narrow_its_team_in_every_field() {
        let narrower = Policy {
            models: vec!["fast".into()],
            limits: Limits {
                rpm: Some(100),
                tpm: Some(1_000),
                budget_daily_micros: Some(1_000_000),
                ..Limits::default()
            },
        };
        assert!(check_within_team(&narrower, &team()).is_ok());
        assert!(
            check_within_team(&Policy::default(), &team()).is_ok(),
            "no limits of its own: the team's hold"
        );
    }

    #[test]
    fn a_wider_key_is_refused_naming_the_field() {
        let mut policy = Policy::default();
        policy.limits.rpm = Some(101);
        assert_eq!(param_of(check_within_team(&policy, &team())), "rpm");

        let mut policy = Policy::default();
        policy.limits.budget_daily_micros = Some(5_000_001);
        let error = check_within_team(&policy, &team()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`budget_daily_usd` USD 5.000001 is above the USD 5 of team `research`: \
             a key can only narrow its team"
        );

        let policy = Policy {
            models: vec!["fast".into(), "huge".into()],
            ..Policy::default()
        };
        assert_eq!(param_of(check_within_team(&policy, &team())), "models");
    }

    #[test]
    fn usd_amounts_read_as_written() {
        assert_eq!(show_usd(1_500_000), "1.5");
        assert_eq!(show_usd(1), "0.000001");
        assert_eq!(show_usd(20_000_000), "20");
    }
}

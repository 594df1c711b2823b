//! A request against its key's and team's limits, in HTTP terms: which
//! limits hold it, the 429 or 402 when one refuses it, and the
//! `x-ratelimit-*` headers OpenAI clients read, on refusals and on every
//! admitted response.

use chorus_actors::admin::show_usd;
use chorus_actors::clock::unix_millis;
use chorus_actors::limits::{openai_duration, MinuteFigures, Period, RateHeaders, RateKind};
use chorus_actors::{Admission, AliasRoute, Holder, Refusal};
use chorus_proto::{ChatRequest, ErrorType};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{ApiError, AppState, Caller};

/// Admits `request` against the caller's limits; `None` for a caller with
/// none (a bootstrap key, or a key and team without limits).
pub fn admit(
    state: &AppState,
    caller: &Caller,
    request: &ChatRequest,
    route: &AliasRoute,
) -> Result<Option<Admission>, ApiError> {
    let Caller::Virtual { key, team } = caller else {
        return Ok(None);
    };
    let key_subject = format!("key:{}", key.id);
    let team_subject;
    let mut holders = Vec::with_capacity(2);
    if !key.record.policy.limits.is_empty() {
        holders.push(Holder {
            subject: &key_subject,
            team: None,
            limits: &key.record.policy.limits,
        });
    }
    if let Some(team) = team
        .as_ref()
        .filter(|team| !team.record.policy.limits.is_empty())
    {
        team_subject = format!("team:{}", team.id);
        holders.push(Holder {
            subject: &team_subject,
            team: Some(&team.record.name),
            limits: &team.record.policy.limits,
        });
    }
    if holders.is_empty() {
        return Ok(None);
    }
    let reservation = chorus_actors::limits::reservation(request, route);
    state
        .limiter
        .admit(&holders, reservation, unix_millis())
        .map(Some)
        .map_err(refused)
}

/// A refusal as the client sees it.
fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::RateLimited {
            kind,
            label,
            limit,
            retry_after_ms,
            headers,
        } => {
            let (what, error_type, code) = match kind {
                RateKind::Requests => (
                    format!("{limit} requests per minute"),
                    ErrorType::RequestsLimit,
                    "rate_limit_exceeded",
                ),
                RateKind::Tokens => (
                    format!("{limit} tokens per minute"),
                    ErrorType::TokensLimit,
                    "rate_limit_exceeded",
                ),
                RateKind::Parallel => (
                    format!("{limit} requests at once"),
                    ErrorType::RequestsLimit,
                    "max_parallel_exceeded",
                ),
                RateKind::BudgetShare(period) => (
                    format!(
                        "this node's share of what is left of the {} budget of USD {}",
                        period.adjective(),
                        show_usd(limit)
                    ),
                    ErrorType::RequestsLimit,
                    "budget_share_exceeded",
                ),
            };
            let when = format!("try again in {}", openai_duration(retry_after_ms));
            let mut extra = HeaderMap::new();
            rate_headers(&headers, &mut extra);
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                error_type,
                code,
                format!("rate limit of {what} reached for {label}: {when}"),
            );
            error.retry_after = Some(retry_after_ms.div_ceil(1_000).max(1).to_string());
            insert(&mut extra, "retry-after-ms", retry_after_ms.to_string());
            error.with_headers(extra)
        }
        Refusal::OverBudget {
            period,
            label,
            budget_micros,
            spent_micros,
        } => {
            let resets = match period {
                Period::Day => "at midnight UTC",
                Period::Month => "on the first of the month, UTC",
            };
            ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                ErrorType::InsufficientQuota,
                "budget_exceeded",
                format!(
                    "the {} budget of USD {} for {label} is spent (USD {} reserved or used): it resets {resets}",
                    period.adjective(),
                    show_usd(budget_micros),
                    show_usd(spent_micros)
                ),
            )
        }
        Refusal::TooLarge { label, limit, need } => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            "request_too_large_for_tpm",
            format!(
                "this request reserves {need} tokens (its prompt and `max_tokens`, or the model's default), \
                 more than the {limit} tokens per minute of {label}: set a smaller `max_tokens`"
            ),
        )
        .with_param("max_tokens"),
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
pub fn rate_headers(figures: &RateHeaders, headers: &mut HeaderMap) {
    let mut put = |kind: &str, figures: &Option<MinuteFigures>| {
        let Some(figures) = figures else {
            return;
        };
        for (name, value) in [
            ("limit", figures.limit.to_string()),
            ("remaining", figures.remaining.to_string()),
            ("reset", openai_duration(figures.reset_ms)),
        ] {
            let name = format!("x-ratelimit-{name}-{kind}");
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
    };
    put("requests", &figures.requests);
    put("tokens", &figures.tokens);
}

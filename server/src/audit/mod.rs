//! The audit trail: who did what, when, from where, with which role.
//!
//! A security review asks two things of a control-room system after an
//! incident: who acknowledged that alarm, and who could have changed the
//! model or the users. Each answer is one row here, written by the code
//! that does the action, in the same request. The table refuses UPDATE,
//! DELETE and TRUNCATE by trigger (migration `20261207200000`), so not
//! even a bug in Trackside can rewrite history; this module only inserts
//! and reads. `GET /api/audit` lists rows, the admin page shows them, and
//! `GET /api/audit.csv` (in `export`) streams them as CSV.

pub mod http;

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres};
use trackside_wire::{AuditEntry, Role};

use crate::time::parse_time;

/// Who did it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// A user's name, `console` for the `trackside` command, or nobody
    /// (the server itself, or a sign-in attempt under no known name).
    pub name: Option<String>,
    pub role: Option<Role>,
    pub address: Option<IpAddr>,
}

impl Actor {
    pub fn user(name: &str, role: Role, address: Option<IpAddr>) -> Self {
        Self {
            name: Some(name.to_owned()),
            role: Some(role),
            address,
        }
    }

    /// Someone at the server's console, through the `trackside` command
    /// (whoever can run it can read the database anyway), named
    /// `console:<operating-system user>`.
    pub fn console(os_user: &str) -> Self {
        Self {
            name: Some(format!("console:{os_user}")),
            role: None,
            address: None,
        }
    }

    /// The server acting on its own (the demo training its models).
    pub fn server() -> Self {
        Self::anonymous(None)
    }

    pub fn anonymous(address: Option<IpAddr>) -> Self {
        Self {
            name: None,
            role: None,
            address,
        }
    }
}

/// Actions, named once.
pub mod action {
    pub const SIGNIN: &str = "signin";
    pub const SIGNIN_FAILED: &str = "signin.failed";
    pub const SIGNOUT: &str = "signout";
    pub const ACKNOWLEDGE: &str = "exception.acknowledge";
    pub const MAINTENANCE_START: &str = "maintenance.start";
    pub const MAINTENANCE_END: &str = "maintenance.end";
    pub const SHELVE: &str = "exception.shelve";
    pub const UNSHELVE: &str = "exception.unshelve";
    pub const TRAIN: &str = "forecast.train";
    pub const MODEL_REPLACED: &str = "forecast.model_replaced";
    pub const LAYOUT_REPLACE: &str = "layout.replace";
    pub const USER_CREATE: &str = "user.create";
    pub const USER_ROLE: &str = "user.role";
    pub const USER_DISABLE: &str = "user.disable";
    pub const USER_ENABLE: &str = "user.enable";
    pub const USER_PASSWORD: &str = "user.password";
    pub const TOKEN_CREATE: &str = "token.create";
    pub const TOKEN_REVOKE: &str = "token.revoke";
    pub const GATEWAY_ADD: &str = "gateway.add";
    pub const GATEWAY_REVOKE: &str = "gateway.revoke";
    pub const GATEWAY_CERTIFICATE: &str = "gateway.certificate";
    pub const CHANNEL_REASSIGN: &str = "channel.reassign";
}

/// Appends one row. A failure is logged, not returned: the action it
/// records has already happened, and the person who did it must hear so.
pub async fn record(
    pool: &PgPool,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    detail: &[(&str, &str)],
) {
    let detail: BTreeMap<&str, &str> = detail.iter().copied().collect();
    let detail = serde_json::to_value(&detail).unwrap_or_default();
    let inserted = sqlx::query(
        "INSERT INTO audit_log (actor, role, address, action, target, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor.name.as_deref())
    .bind(actor.role.map(Role::as_str))
    .bind(actor.address.map(|a| a.to_string()))
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(pool)
    .await;
    if let Err(err) = inserted {
        tracing::error!(action, target, "cannot write the audit trail: {err}");
    }
}

/// Failed sign-ins for this account, or from this address, since `since`;
/// attempts refused by the throttle itself are recorded but not counted,
/// so a person who keeps trying is let in when the window has passed.
pub async fn recent_failures(
    pool: &PgPool,
    account: &str,
    address: Option<IpAddr>,
    since: DateTime<Utc>,
) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM audit_log WHERE action = 'signin.failed'
              AND target = $1 AND at > $3 AND detail->>'reason' <> 'throttled'),
           (SELECT count(*) FROM audit_log WHERE action = 'signin.failed'
              AND address = $2 AND at > $3 AND detail->>'reason' <> 'throttled')",
    )
    .bind(account)
    .bind(address.map(|a| a.to_string()))
    .bind(since)
    .fetch_one(pool)
    .await
}

/// The query string of `GET /api/audit` and `/api/audit.csv`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    pub from: Option<String>,
    pub to: Option<String>,
    pub actor: Option<String>,
    /// Comma-separated; `user.*` is every action starting `user.`.
    pub action: Option<String>,
    pub target: Option<String>,
    pub limit: Option<i64>,
}

pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 5_000;

/// A checked filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    /// Exact names, and prefixes (from `user.*`).
    pub actions: Vec<String>,
    pub prefixes: Vec<String>,
    pub target: Option<String>,
}

impl Filter {
    pub fn parse(params: &Params) -> Result<Self, String> {
        let time = |name: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    parse_time(name, t)
                        .map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or_default())
                })
                .transpose()
        };
        let mut filter = Filter {
            from: time("from", &params.from)?,
            to: time("to", &params.to)?,
            actor: params.actor.clone().filter(|a| !a.trim().is_empty()),
            target: params.target.clone().filter(|t| !t.trim().is_empty()),
            ..Filter::default()
        };
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from >= to
        {
            return Err("from must be before to".into());
        }
        for action in params.action.iter().flat_map(|a| a.split(',')) {
            let action = action.trim();
            if action.is_empty() {
                continue;
            }
            if action.len() > 64
                || !action
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || matches!(c, '.' | '_' | '*'))
            {
                return Err(format!(
                    "action {action:?} is not an action name (such as signin.failed or user.*)"
                ));
            }
            match action.strip_suffix('*') {
                Some(prefix) => filter.prefixes.push(prefix.to_owned()),
                None => filter.actions.push(action.to_owned()),
            }
        }
        Ok(filter)
    }

    /// Binds the filter to a statement built on [`WHERE`]: its parameters
    /// `$1` to `$6`, in order.
    pub fn bind<'q, O>(
        &'q self,
        query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(self.from)
            .bind(self.to)
            .bind(self.actor.as_deref())
            .bind(self.target.as_deref())
            .bind(&self.actions)
            .bind(&self.prefixes)
    }
}

/// The filter as SQL on `audit_log`, with [`Filter::bind`]'s parameters;
/// an absent filter matches every row.
pub const WHERE: &str = "WHERE ($1::timestamptz IS NULL OR at >= $1)
       AND ($2::timestamptz IS NULL OR at < $2)
       AND ($3::text IS NULL OR lower(actor) = lower($3))
       AND ($4::text IS NULL OR target = $4)
       AND ((cardinality($5::text[]) = 0 AND cardinality($6::text[]) = 0)
            OR action = ANY($5)
            OR EXISTS (SELECT 1 FROM unnest($6::text[]) AS p WHERE starts_with(action, p)))";

/// The columns every reader of the trail selects, in this order.
pub const COLUMNS: &str = "id, at, actor, role, address, action, target, detail";

pub type Row = (
    i64,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    serde_json::Value,
);

pub fn entry(row: Row) -> AuditEntry {
    let (id, at, actor, role, address, action, target, detail) = row;
    AuditEntry {
        id,
        at: at.timestamp_millis(),
        actor,
        role,
        address,
        action,
        target,
        detail: detail_map(detail),
    }
}

pub fn detail_map(detail: serde_json::Value) -> BTreeMap<String, String> {
    match detail {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The newest rows first, at most `limit`.
pub async fn list(pool: &PgPool, filter: &Filter, limit: i64) -> sqlx::Result<Vec<AuditEntry>> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log {WHERE} ORDER BY at DESC, id DESC LIMIT $7");
    let rows: Vec<Row> = filter
        .bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(entry).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_or_say_why_not() {
        let filter = Filter::parse(&Params {
            action: Some("signin.failed, user.*".into()),
            from: Some("2026-12-01T00:00:00Z".into()),
            ..Params::default()
        })
        .unwrap();
        assert_eq!(filter.actions, vec!["signin.failed"]);
        assert_eq!(filter.prefixes, vec!["user."]);
        assert!(filter.from.is_some());
        for bad in [
            Params {
                action: Some("DROP TABLE".into()),
                ..Params::default()
            },
            Params {
                from: Some("yesterday".into()),
                ..Params::default()
            },
            Params {
                from: Some("2000".into()),
                to: Some("1000".into()),
                ..Params::default()
            },
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad:?}");
        }
    }
}

//! Turns an MQTT publish (topic + payload) into readings.
//!
//! Topics, with `{gateway}` 1 to 64 of `[A-Za-z0-9_.-]`:
//! - `trackside/{gateway}/readings`: a JSON batch
//!   `{"ts": <optional>, "readings": [{"channel": "T101/relay_voltage", "value": 1.82, "ts": <optional>}]}`;
//!   a reading without `ts` takes the batch's, a batch without one takes the
//!   broker's receive time. A timestamp is an RFC 3339 string or integer Unix
//!   milliseconds.
//! - `trackside/{gateway}/channel/{circuit}/{parameter}`: the payload is one
//!   number in ASCII, stamped with the receive time.
//! - `trackside/{gateway}/senml`: SenML JSON (RFC 8428), see [`senml`].
//! - `trackside/{gateway}/status`: `online` or `offline`. A gateway publishes
//!   `online` (retained) after connecting and sets `offline` (retained) as
//!   its last will, which the broker publishes when the session ends
//!   without a clean DISCONNECT.
//!
//! Decoding never fails as a whole for one bad reading: each bad element of a
//! batch becomes its own [`Rejection`] and the rest go on.

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;
use trackside_wire::ChannelName;

use crate::reading::{DecodedReading, GatewayStatus, Rejection, RejectionKind};

#[cfg(test)]
mod props;
mod senml;

pub const TOPIC_ROOT: &str = "trackside";
/// The TLS listener's topics: `/tenants/{gateway}/trackside/{gateway}/...`.
/// The broker sets the tenant from the client certificate and refuses
/// anything outside it, so here the tenant is a proven identity.
pub const TENANT_ROOT: &str = "/tenants/";
/// Sparkplug B's topic namespace, decoded by `ingest::sparkplug`.
pub const NAMESPACE: &str = "spBv1.0";

/// The subscription filters that cover every topic gateways publish to,
/// Sparkplug B's namespace (`spBv1.0/...`) included.
pub fn ingest_filters() -> [String; 4] {
    [
        format!("{TOPIC_ROOT}/#"),
        format!("{TENANT_ROOT}+/{TOPIC_ROOT}/#"),
        format!("{NAMESPACE}/#"),
        format!("{TENANT_ROOT}+/{NAMESPACE}/#"),
    ]
}

/// What one publish decoded to: the readings that are good, and one
/// rejection per element that is not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    pub gateway: String,
    pub readings: Vec<DecodedReading>,
    pub rejections: Vec<Rejection>,
    /// Set by a message on the gateway's status topic.
    pub status: Option<GatewayStatus>,
}

#[derive(Debug, Clone)]
pub struct DecodeContext {
    pub received_at: DateTime<Utc>,
    /// How far ahead of `received_at` a timestamp may be.
    pub max_future: TimeDelta,
    /// The newest timestamp the gateway stated in the message, accepted or
    /// not: the sample of its clock against `received_at`.
    newest_stated: std::cell::Cell<Option<DateTime<Utc>>>,
}

impl DecodeContext {
    pub fn new(received_at: DateTime<Utc>, max_future: TimeDelta) -> Self {
        Self {
            received_at,
            max_future,
            newest_stated: Default::default(),
        }
    }

    /// How far the newest timestamp the message stated was ahead of its
    /// receipt (negative: behind); `None` when it stated none (every
    /// reading took the receive time).
    pub fn stated_offset(&self) -> Option<TimeDelta> {
        self.newest_stated.get().map(|ts| ts - self.received_at)
    }
}

/// The earliest timestamp accepted: anything before is a gateway whose clock
/// was never set (1970) rather than a real reading.
const EARLIEST_MS: i64 = 946_684_800_000; // 2000-01-01T00:00:00Z

pub fn decode(topic: &str, payload: &[u8], cx: &DecodeContext) -> Decoded {
    let (tenant, route) = match topic.strip_prefix(TENANT_ROOT) {
        Some(rest) => match rest.split_once('/') {
            Some((tenant, route)) => (Some(tenant), route),
            None => (Some(rest), ""),
        },
        None => (None, topic),
    };
    if let Some(tenant) = tenant.filter(|tenant| !valid_gateway_id(tenant)) {
        // A certificate whose Organization is no gateway id (an operator's
        // own CA may issue one): it identifies no gateway, so nothing passes.
        return Decoded {
            rejections: vec![rejection(
                topic,
                None,
                payload.to_vec(),
                format!(
                    "tenant `{tenant}` is not a gateway id (1 to 64 of letters, digits, `_`, `-`, `.`)"
                ),
                RejectionKind::Acl,
            )],
            ..Decoded::default()
        };
    }
    let kind = decode_topic(route);
    if let (Some(tenant), Ok(kind)) = (tenant, &kind) {
        let gateway = kind.gateway();
        if gateway != tenant {
            let reason = format!(
                "the certificate of gateway `{tenant}` does not allow publishing as `{gateway}`: \
                 use `{TENANT_ROOT}{tenant}/{TOPIC_ROOT}/{tenant}/...`"
            );
            return Decoded {
                gateway: tenant.to_owned(),
                rejections: vec![rejection(
                    topic,
                    Some(tenant),
                    payload.to_vec(),
                    reason,
                    RejectionKind::Acl,
                )],
                ..Decoded::default()
            };
        }
    }
    match kind {
        Ok(TopicKind::Batch { gateway }) => decode_batch(topic, gateway, payload, cx),
        Ok(TopicKind::Senml { gateway }) => senml::decode(topic, gateway, payload, cx),
        Ok(TopicKind::Status { gateway }) => {
            let mut decoded = Decoded {
                gateway: gateway.to_owned(),
                ..Decoded::default()
            };
            match decode_status(payload) {
                Ok(status) => decoded.status = Some(status),
                Err(reason) => decoded.rejections.push(rejection(
                    topic,
                    Some(gateway),
                    payload.to_vec(),
                    reason,
                    RejectionKind::Payload,
                )),
            }
            decoded
        }
        Ok(TopicKind::Single { gateway, channel }) => {
            let mut decoded = Decoded {
                gateway: gateway.to_owned(),
                ..Decoded::default()
            };
            match decode_bare_number(payload) {
                Ok(value) => decoded.readings.push(DecodedReading {
                    channel,
                    ts: cx.received_at.trunc_subsecs(6),
                    value,
                }),
                Err(reason) => decoded.rejections.push(rejection(
                    topic,
                    Some(gateway),
                    payload.to_vec(),
                    reason,
                    RejectionKind::Payload,
                )),
            }
            decoded
        }
        Err((gateway, reason)) => Decoded {
            gateway: gateway.or(tenant).unwrap_or_default().to_owned(),
            rejections: vec![rejection(
                topic,
                gateway.or(tenant),
                payload.to_vec(),
                reason,
                RejectionKind::Topic,
            )],
            ..Decoded::default()
        },
    }
}

impl TopicKind<'_> {
    fn gateway(&self) -> &str {
        match self {
            Self::Batch { gateway }
            | Self::Senml { gateway }
            | Self::Status { gateway }
            | Self::Single { gateway, .. } => gateway,
        }
    }
}

enum TopicKind<'a> {
    Batch {
        gateway: &'a str,
    },
    Senml {
        gateway: &'a str,
    },
    Status {
        gateway: &'a str,
    },
    Single {
        gateway: &'a str,
        channel: ChannelName,
    },
}

fn decode_topic(topic: &str) -> Result<TopicKind<'_>, (Option<&str>, String)> {
    let mut parts = topic.split('/');
    if parts.next() != Some(TOPIC_ROOT) {
        return Err((None, format!("topic must start with `{TOPIC_ROOT}/`")));
    }
    let gateway = parts.next().unwrap_or_default();
    if !valid_gateway_id(gateway) {
        return Err((
            None,
            "gateway id in the topic must be 1 to 64 of letters, digits, `_`, `-`, `.`".into(),
        ));
    }
    let rest: Vec<&str> = parts.collect();
    match rest.as_slice() {
        ["readings"] => Ok(TopicKind::Batch { gateway }),
        ["senml"] => Ok(TopicKind::Senml { gateway }),
        ["status"] => Ok(TopicKind::Status { gateway }),
        ["channel", circuit, parameter] => ChannelName::from_parts(circuit, parameter)
            .map(|channel| TopicKind::Single { gateway, channel })
            .map_err(|err| (Some(gateway), format!("channel in topic: {err}"))),
        _ => Err((
            Some(gateway),
            format!(
                "unknown topic: expected `{TOPIC_ROOT}/{gateway}/readings`, \
                 `{TOPIC_ROOT}/{gateway}/senml`, \
                 `{TOPIC_ROOT}/{gateway}/channel/{{circuit}}/{{parameter}}` or \
                 `{TOPIC_ROOT}/{gateway}/status`"
            ),
        )),
    }
}

pub fn valid_gateway_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchEnvelope {
    #[serde(default)]
    ts: Option<Value>,
    readings: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchReading {
    channel: String,
    value: Value,
    #[serde(default)]
    ts: Option<Value>,
}

/// A batch parsed straight into typed fields, borrowing from the payload.
/// Several times faster than going through `Value` per reading, which
/// matters because the broker's log only buffers so much while ingest is
/// behind. Anything it cannot take whole goes the careful way.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastBatch<'a> {
    #[serde(default, borrow)]
    ts: Option<FastTs<'a>>,
    #[serde(borrow)]
    readings: Vec<FastReading<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastReading<'a> {
    channel: &'a str,
    value: f64,
    #[serde(default, borrow)]
    ts: Option<FastTs<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FastTs<'a> {
    Millis(i64),
    Text(&'a str),
}

impl FastTs<'_> {
    fn resolve(&self, cx: &DecodeContext) -> Option<DateTime<Utc>> {
        let parsed = match self {
            FastTs::Millis(ms) => DateTime::from_timestamp_millis(*ms)?,
            FastTs::Text(text) => DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc),
        };
        check_ts(parsed, cx).ok()
    }
}

/// The whole batch when every reading in it is good; `None` sends it to
/// [`decode_batch`]'s careful path, which finds and explains the bad ones.
fn decode_batch_fast(gateway: &str, payload: &[u8], cx: &DecodeContext) -> Option<Decoded> {
    let batch: FastBatch = serde_json::from_slice(payload).ok()?;
    let batch_ts = match &batch.ts {
        Some(ts) => ts.resolve(cx)?,
        None => cx.received_at,
    };
    let mut readings = Vec::with_capacity(batch.readings.len());
    for reading in &batch.readings {
        if !reading.value.is_finite() {
            return None;
        }
        let ts = match &reading.ts {
            Some(ts) => ts.resolve(cx)?,
            None => batch_ts,
        };
        readings.push(DecodedReading {
            channel: ChannelName::parse(reading.channel).ok()?,
            ts: ts.trunc_subsecs(6),
            value: reading.value,
        });
    }
    Some(Decoded {
        gateway: gateway.to_owned(),
        readings,
        ..Decoded::default()
    })
}

fn decode_batch(topic: &str, gateway: &str, payload: &[u8], cx: &DecodeContext) -> Decoded {
    if let Some(decoded) = decode_batch_fast(gateway, payload, cx) {
        return decoded;
    }
    decode_batch_careful(topic, gateway, payload, cx)
}

/// The batch decoder without its fast path, which explains every bad
/// reading. Public so that the fuzz target `readings_batch` can hold the
/// two paths to the same answer on every payload the fast path takes.
#[doc(hidden)]
pub fn decode_batch_careful(
    topic: &str,
    gateway: &str,
    payload: &[u8],
    cx: &DecodeContext,
) -> Decoded {
    let mut decoded = Decoded {
        gateway: gateway.to_owned(),
        ..Decoded::default()
    };
    let whole = |reason: String| {
        rejection(
            topic,
            Some(gateway),
            payload.to_vec(),
            reason,
            RejectionKind::Payload,
        )
    };
    let envelope: BatchEnvelope = match serde_json::from_slice(payload) {
        Ok(envelope) => envelope,
        Err(err) => {
            decoded
                .rejections
                .push(whole(format!("not a reading batch: {err}")));
            return decoded;
        }
    };
    let batch_ts = match envelope.ts.as_ref().map(|ts| parse_ts(ts, cx)).transpose() {
        Ok(ts) => ts.unwrap_or(cx.received_at),
        Err(reason) => {
            decoded
                .rejections
                .push(whole(format!("batch ts: {reason}")));
            return decoded;
        }
    };
    decoded.readings.reserve(envelope.readings.len());
    for (index, element) in envelope.readings.into_iter().enumerate() {
        match decode_batch_reading(&element, batch_ts, cx) {
            Ok(reading) => decoded.readings.push(reading),
            Err(reason) => decoded.rejections.push(rejection(
                topic,
                Some(gateway),
                serde_json::to_vec(&element).unwrap_or_default(),
                format!("readings[{index}]: {reason}"),
                RejectionKind::Reading,
            )),
        }
    }
    decoded
}

fn decode_batch_reading(
    element: &Value,
    batch_ts: DateTime<Utc>,
    cx: &DecodeContext,
) -> Result<DecodedReading, String> {
    let reading = BatchReading::deserialize(element).map_err(|err| err.to_string())?;
    let channel = ChannelName::parse(&reading.channel).map_err(|err| err.to_string())?;
    let value = reading
        .value
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or("value must be a number")?;
    let ts = match &reading.ts {
        Some(ts) => parse_ts(ts, cx)?,
        None => batch_ts,
    };
    Ok(DecodedReading {
        channel,
        ts: ts.trunc_subsecs(6),
        value,
    })
}

fn parse_ts(ts: &Value, cx: &DecodeContext) -> Result<DateTime<Utc>, String> {
    let parsed = match ts {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map(|ts| ts.with_timezone(&Utc))
            .map_err(|err| format!("{text:?} is not RFC 3339: {err}"))?,
        Value::Number(number) => {
            let ms = number
                .as_i64()
                .ok_or("a numeric ts must be integer Unix milliseconds")?;
            DateTime::from_timestamp_millis(ms).ok_or("ts is out of range")?
        }
        _ => return Err("ts must be an RFC 3339 string or integer Unix milliseconds".into()),
    };
    check_ts(parsed, cx)
}

/// The plausibility bounds every timestamp must meet, whatever its format.
pub(crate) fn check_ts(parsed: DateTime<Utc>, cx: &DecodeContext) -> Result<DateTime<Utc>, String> {
    if cx.newest_stated.get().is_none_or(|newest| parsed > newest) {
        cx.newest_stated.set(Some(parsed));
    }
    if parsed.timestamp_millis() < EARLIEST_MS {
        return Err(format!(
            "ts {parsed} is before 2000: is the gateway's clock set?"
        ));
    }
    if parsed > cx.received_at + cx.max_future {
        return Err(format!(
            "ts {parsed} is ahead of the server's clock ({}) by more than {} s",
            cx.received_at,
            cx.max_future.num_seconds()
        ));
    }
    Ok(parsed)
}

fn decode_status(payload: &[u8]) -> Result<GatewayStatus, String> {
    match std::str::from_utf8(payload).map(str::trim) {
        Ok(text) if text.eq_ignore_ascii_case("online") => Ok(GatewayStatus::Online),
        Ok(text) if text.eq_ignore_ascii_case("offline") => Ok(GatewayStatus::Offline),
        _ => Err("status must be `online` or `offline`".into()),
    }
}

fn decode_bare_number(payload: &[u8]) -> Result<f64, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8 text")?;
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("payload {:?} is not a number", truncate(text, 40)))?;
    if !value.is_finite() {
        return Err("value must be a finite number".into());
    }
    Ok(value)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

pub(crate) fn rejection(
    topic: &str,
    gateway: Option<&str>,
    payload: Vec<u8>,
    reason: String,
    kind: RejectionKind,
) -> Rejection {
    Rejection {
        topic: topic.to_owned(),
        gateway: gateway.map(str::to_owned),
        payload,
        reason,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use chrono::SecondsFormat;

    use super::*;

    fn cx() -> DecodeContext {
        DecodeContext {
            newest_stated: Default::default(),
            received_at: DateTime::parse_from_rfc3339("2026-11-28T10:00:00.123456789Z")
                .unwrap()
                .with_timezone(&Utc),
            max_future: TimeDelta::hours(1),
        }
    }

    /// One line per case: what a gateway sends, what is stored, what is rejected.
    fn check(topic: &str, payload: &str, readings: &[(&str, &str, f64)], rejections: &[&str]) {
        let decoded = decode(topic, payload.as_bytes(), &cx());
        assert_decoded(
            payload,
            &decoded,
            readings,
            rejections,
            SecondsFormat::Micros,
        );
    }

    /// `decoded` holds exactly `readings` (channel, time in `format`, value)
    /// and one rejection per entry of `rejections`, each reason containing it.
    pub(super) fn assert_decoded(
        input: &str,
        decoded: &Decoded,
        readings: &[(&str, &str, f64)],
        rejections: &[&str],
        format: SecondsFormat,
    ) {
        let got: Vec<(String, String, f64)> = decoded
            .readings
            .iter()
            .map(|r| {
                (
                    r.channel.to_string(),
                    r.ts.to_rfc3339_opts(format, true),
                    r.value,
                )
            })
            .collect();
        let want: Vec<(String, String, f64)> = readings
            .iter()
            .map(|(c, t, v)| (c.to_string(), t.to_string(), *v))
            .collect();
        assert_eq!(got, want, "readings of {input}");
        let reasons: Vec<&str> = decoded
            .rejections
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        assert_eq!(
            reasons.len(),
            rejections.len(),
            "rejections of {input}: {reasons:?}"
        );
        for (reason, expected) in reasons.iter().zip(rejections) {
            assert!(
                reason.contains(expected),
                "{reason:?} should contain {expected:?}"
            );
        }
    }

    const NOW: &str = "2026-11-28T10:00:00.123456Z";

    #[test]
    fn batch_with_per_reading_timestamps() {
        check(
            "trackside/gw1/readings",
            r#"{"readings":[
                {"channel":"T101/relay_voltage","value":1.82,"ts":"2026-11-28T09:59:59.5Z"},
                {"channel":"T101/relay_state","value":1,"ts":1795859999000}]}"#,
            &[
                ("T101/relay_voltage", "2026-11-28T09:59:59.500000Z", 1.82),
                ("T101/relay_state", "2026-11-28T09:59:59.000000Z", 1.0),
            ],
            &[],
        );
    }

    #[test]
    fn readings_inherit_batch_ts_then_receive_time() {
        check(
            "trackside/gw1/readings",
            r#"{"ts":"2026-11-28T09:00:00+01:00","readings":[{"channel":"T1/feed_voltage","value":9.5}]}"#,
            &[("T1/feed_voltage", "2026-11-28T08:00:00.000000Z", 9.5)],
            &[],
        );
        check(
            "trackside/gw1/readings",
            r#"{"readings":[{"channel":"T1/feed_voltage","value":9.5}]}"#,
            &[("T1/feed_voltage", NOW, 9.5)],
            &[],
        );
    }

    #[test]
    fn one_bad_reading_rejects_only_itself() {
        check(
            "trackside/gw1/readings",
            r#"{"readings":[
                {"channel":"T1/feed_voltage","value":"high"},
                {"channel":"T1 feed","value":1},
                {"channel":"T1/feed_current","value":2.5},
                {"channel":"T1/feed_current","value":2.5,"ts":"yesterday"},
                {"channel":"T1/feed_current","value":2.5,"ts":0},
                {"channel":"T1/feed_current","value":2.5,"ts":"2026-11-28T12:00:00Z"},
                {"channel":"T1/feed_current","value":2.5,"ts":1.5},
                {"channel":"T1/feed_current","value":2.5,"volts":1},
                7]}"#,
            &[("T1/feed_current", NOW, 2.5)],
            &[
                "readings[0]: value must be a number",
                "readings[1]: channel must be",
                "readings[3]: \"yesterday\" is not RFC 3339",
                "readings[4]: ts 1970-01-01 00:00:00 UTC is before 2000",
                "readings[5]: ts 2026-11-28 12:00:00 UTC is ahead",
                "readings[6]: a numeric ts must be integer",
                "readings[7]: unknown field `volts`",
                "readings[8]: invalid type: integer `7`",
            ],
        );
    }

    #[test]
    fn malformed_batches_are_rejected_whole() {
        check(
            "trackside/gw1/readings",
            "{not json",
            &[],
            &["not a reading batch"],
        );
        check(
            "trackside/gw1/readings",
            r#"{"values":[]}"#,
            &[],
            &["not a reading batch"],
        );
        check(
            "trackside/gw1/readings",
            r#"{"ts":"soon","readings":[{"channel":"T1/x","value":1}]}"#,
            &[],
            &["batch ts:"],
        );
        check("trackside/gw1/readings", r#"{"readings":[]}"#, &[], &[]);
    }

    #[test]
    fn bare_numbers_on_channel_topics() {
        check(
            "trackside/gw2/channel/T7/relay_current",
            " 142.5\n",
            &[("T7/relay_current", NOW, 142.5)],
            &[],
        );
        check(
            "trackside/gw2/channel/T7/relay_current",
            "NaN",
            &[],
            &["finite"],
        );
        check(
            "trackside/gw2/channel/T7/relay_current",
            "1,5",
            &[],
            &["not a number"],
        );
        check(
            "trackside/gw2/channel/T7/relay_current",
            "\u{fffd}",
            &[],
            &["not a number"],
        );
        check(
            "trackside/gw2/channel/T7/relay current",
            "1",
            &[],
            &["channel in topic"],
        );
    }

    #[test]
    fn status_topic() {
        let status = |payload: &str| decode("trackside/gw5/status", payload.as_bytes(), &cx());
        assert_eq!(status("online").status, Some(GatewayStatus::Online));
        assert_eq!(status(" OFFLINE\n").status, Some(GatewayStatus::Offline));
        assert_eq!(status("online").gateway, "gw5");
        let bad = status("maybe");
        assert_eq!(bad.status, None);
        assert!(bad.rejections[0].reason.contains("`online` or `offline`"));
    }

    #[test]
    fn topics_outside_the_scheme_are_rejected() {
        check("trackside/gw2/telemetry", "1", &[], &["unknown topic"]);
        check("trackside/gw 2/readings", "1", &[], &["gateway id"]);
        check("trackside//readings", "1", &[], &["gateway id"]);
        check("other/gw2/readings", "1", &[], &["topic must start"]);
    }

    #[test]
    fn tenant_topics_carry_the_certificate_identity() {
        let batch = r#"{"readings":[{"channel":"T1/relay_voltage","value":1.5}]}"#;
        check(
            "/tenants/gw1/trackside/gw1/readings",
            batch,
            &[("T1/relay_voltage", NOW, 1.5)],
            &[],
        );
        check(
            "/tenants/gw1/trackside/gw1/channel/T2/feed_current",
            "0.25",
            &[("T2/feed_current", NOW, 0.25)],
            &[],
        );
        check(
            "/tenants/gw1/trackside/gw2/readings",
            batch,
            &[],
            &["certificate of gateway `gw1` does not allow publishing as `gw2`"],
        );
        check("/tenants/gw1/other", batch, &[], &["topic must start with"]);
        check("/tenants/gw1", batch, &[], &["topic must start with"]);
        check(
            "/tenants/gwé1/trackside/gw2/readings",
            batch,
            &[],
            &["tenant `gwé1` is not a gateway id"],
        );

        let status = decode("/tenants/gw1/trackside/gw1/status", b"offline", &cx());
        assert_eq!(
            (status.gateway.as_str(), status.status),
            ("gw1", Some(GatewayStatus::Offline))
        );
        let forged = decode("/tenants/gw1/trackside/gw2/status", b"offline", &cx());
        assert_eq!(forged.status, None, "a forged status changes nothing");
        assert_eq!(forged.gateway, "gw1");
        assert_eq!(forged.rejections[0].kind, RejectionKind::Acl);
        assert_eq!(forged.rejections[0].gateway.as_deref(), Some("gw1"));
    }

    #[test]
    fn rejections_are_classified_for_counting() {
        let kind = |topic: &str, payload: &str| {
            decode(topic, payload.as_bytes(), &cx())
                .rejections
                .iter()
                .map(|r| r.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(kind("elsewhere/gw1/readings", "1"), [RejectionKind::Topic]);
        assert_eq!(
            kind("trackside/gw1/readings", "{"),
            [RejectionKind::Payload]
        );
        assert_eq!(
            kind("trackside/gw1/status", "maybe"),
            [RejectionKind::Payload]
        );
        assert_eq!(
            kind(
                "trackside/gw1/readings",
                r#"{"readings":[{"channel":"T1/relay_voltage","value":1},{"channel":"bad","value":1}]}"#
            ),
            [RejectionKind::Reading]
        );
    }

    #[test]
    fn rejections_keep_the_gateway_and_payload() {
        let decoded = decode("trackside/gw9/readings", b"\xff\xfe", &cx());
        assert_eq!(decoded.gateway, "gw9");
        assert_eq!(decoded.rejections[0].gateway.as_deref(), Some("gw9"));
        assert_eq!(decoded.rejections[0].payload, b"\xff\xfe");
    }
}

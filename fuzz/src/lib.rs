//! What every decoder promises (ARCHITECTURE.md, `server/src/ingest/`),
//! checked by the fuzz targets on each input they try. A broken promise
//! panics, which libFuzzer reports as a crash together with the input.
//!
//! Each target's function decodes on its own topic and checks the
//! invariants shared by all decoders, then the ones of its payload format.

use chrono::{DateTime, SecondsFormat, SubsecRound as _, TimeDelta, Utc};
use serde_json::{Value, json};
use trackside::ingest::decode::{
    DecodeContext, Decoded, decode, decode_batch_careful, valid_gateway_id,
};
use trackside::reading::GatewayStatus;
use trackside_wire::ChannelName;

const GATEWAY: &str = "gw";
const READINGS_TOPIC: &str = "trackside/gw/readings";
const SENML_TOPIC: &str = "trackside/gw/senml";
const STATUS_TOPIC: &str = "trackside/gw/status";
const CHANNEL: &str = "T1/relay_voltage";
const CHANNEL_TOPIC: &str = "trackside/gw/channel/T1/relay_voltage";

/// A receive time with nanoseconds, so that every accepted timestamp shows
/// whether it was truncated to microseconds.
fn context() -> DecodeContext {
    DecodeContext::new(
        DateTime::parse_from_rfc3339("2026-11-28T10:00:00.123456789Z")
            .expect("a valid RFC 3339 time")
            .with_timezone(&Utc),
        TimeDelta::hours(1),
    )
}

/// A JSON reading batch: the fast path agrees with the careful one, every
/// element is a reading or a rejection, and what was accepted decodes the
/// same when a gateway sends it again.
pub fn readings(payload: &[u8]) {
    let cx = context();
    let decoded = decode(READINGS_TOPIC, payload, &cx);
    check_any(READINGS_TOPIC, payload, &decoded, &cx);
    assert_eq!(decoded.gateway, GATEWAY);
    assert_eq!(decoded.status, None);
    assert_eq!(
        decoded,
        decode_batch_careful(READINGS_TOPIC, GATEWAY, payload, &cx),
        "the fast path decoded differently from the careful path"
    );
    check_elements(payload, &decoded, "readings[", |pack| {
        pack.get("readings")?.as_array().map(Vec::len)
    })
    .exact();
    if !decoded.readings.is_empty() {
        let resent = json!({
            "readings": decoded.readings.iter().map(|r| json!({
                "channel": r.channel.as_str(),
                "ts": r.ts.to_rfc3339_opts(SecondsFormat::Micros, true),
                "value": r.value,
            })).collect::<Vec<_>>()
        })
        .to_string();
        let again = decode(READINGS_TOPIC, resent.as_bytes(), &cx);
        assert_eq!(again.readings, decoded.readings, "re-sent as {resent}");
        assert!(again.rejections.is_empty(), "{:?}", again.rejections);
    }
}

/// SenML: each record is a reading, a rejection naming its index, or a
/// record of base fields only.
pub fn senml(payload: &[u8]) {
    let cx = context();
    let decoded = decode(SENML_TOPIC, payload, &cx);
    check_any(SENML_TOPIC, payload, &decoded, &cx);
    assert_eq!(decoded.gateway, GATEWAY);
    assert_eq!(decoded.status, None);
    check_elements(payload, &decoded, "record ", |pack| {
        pack.as_array().map(Vec::len)
    });
}

/// `online` or `offline` in any case, blanks around; anything else is one
/// rejection.
pub fn status(payload: &[u8]) {
    let cx = context();
    let decoded = decode(STATUS_TOPIC, payload, &cx);
    check_any(STATUS_TOPIC, payload, &decoded, &cx);
    let word = std::str::from_utf8(payload).map(|text| text.trim().to_ascii_lowercase());
    let expected = match word.as_deref() {
        Ok("online") => Some(GatewayStatus::Online),
        Ok("offline") => Some(GatewayStatus::Offline),
        _ => None,
    };
    assert_eq!(decoded.status, expected);
    assert!(decoded.readings.is_empty());
    assert_eq!(decoded.rejections.len(), usize::from(expected.is_none()));
}

/// One number in ASCII: exactly one reading with that value, stamped on
/// receipt, or one rejection; the value printed back reads the same.
pub fn bare_number(payload: &[u8]) {
    let cx = context();
    let decoded = decode(CHANNEL_TOPIC, payload, &cx);
    check_any(CHANNEL_TOPIC, payload, &decoded, &cx);
    let expected = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|value| value.is_finite());
    match (expected, decoded.readings.as_slice()) {
        (Some(value), [reading]) => {
            assert!(decoded.rejections.is_empty());
            assert_eq!(reading.value.to_bits(), value.to_bits());
            assert_eq!(reading.channel.as_str(), CHANNEL);
            assert_eq!(reading.ts, cx.received_at.trunc_subsecs(6));
            let printed = value.to_string();
            let again = decode(CHANNEL_TOPIC, printed.as_bytes(), &cx);
            assert_eq!(again.readings, decoded.readings, "printed as {printed}");
        }
        (None, []) => assert_eq!(decoded.rejections.len(), 1),
        (expected, got) => panic!("expected {expected:?}, decoded {got:?}"),
    }
}

/// A Sparkplug B session: the input is a run of messages, each a byte
/// choosing its topic (birth, data or death, of the node or a device),
/// a byte of payload length, then the payload, decoded in order in one
/// session. Each obeys every decoder's invariants; status comes only from
/// births and deaths, readings only from births and data.
pub fn sparkplug(data: &[u8]) {
    const TOPICS: [&str; 6] = [
        "spBv1.0/g/NBIRTH/gw",
        "spBv1.0/g/NDATA/gw",
        "spBv1.0/g/NDEATH/gw",
        "spBv1.0/g/DBIRTH/gw/T1",
        "spBv1.0/g/DDATA/gw/T1",
        "spBv1.0/g/DDEATH/gw/T1",
    ];
    let sessions = trackside::ingest::sparkplug::Sessions::new(
        trackside::config::SparkplugConfig::default(),
        std::sync::Arc::new(trackside::metrics::Metrics::default()),
    );
    let cx = context();
    let mut rest = data;
    while let [which, len, tail @ ..] = rest {
        let (payload, next) = tail.split_at((*len as usize).min(tail.len()));
        rest = next;
        let topic = TOPICS[*which as usize % TOPICS.len()];
        let decoded = sessions.decode(topic, payload, &cx, true);
        check_any(topic, payload, &decoded, &cx);
        if !decoded.readings.is_empty() || decoded.status.is_some() {
            assert_eq!(decoded.gateway, GATEWAY);
        }
        if decoded.status.is_some() {
            assert!(
                topic.contains("BIRTH") || topic.contains("DEATH"),
                "status from {topic}"
            );
        }
        if !decoded.readings.is_empty() {
            assert!(!topic.contains("DEATH"), "readings from {topic}");
        }
    }
}

/// Any topic and payload, split at the first NUL: MQTT forbids NUL in topic
/// names, so the split loses no topic and keeps the seed files readable.
pub fn any_topic(data: &[u8]) {
    let (topic, payload) = match data.iter().position(|&byte| byte == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    // Ingest rejects a topic that is not UTF-8 before it reaches `decode`.
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    let cx = context();
    let decoded = decode(topic, payload, &cx);
    check_any(topic, payload, &decoded, &cx);
    // Only an empty batch or pack yields nothing at all.
    if decoded.readings.is_empty() && decoded.rejections.is_empty() && decoded.status.is_none() {
        assert!(
            topic.ends_with("/readings") || topic.ends_with("/senml"),
            "{topic:?} decoded to nothing"
        );
    }
    if decoded.status.is_some() {
        assert!(topic.ends_with("/status"), "status from {topic:?}");
    }
}

/// The invariants of every decoder, whatever the topic.
fn check_any(topic: &str, payload: &[u8], decoded: &Decoded, cx: &DecodeContext) {
    for rejection in &decoded.rejections {
        assert!(
            !rejection.reason.trim().is_empty(),
            "a rejection without a reason: {rejection:?}"
        );
        assert_eq!(rejection.topic, topic, "a rejection keeps its topic");
        if let Some(gateway) = &rejection.gateway {
            assert_eq!(gateway, &decoded.gateway, "{rejection:?}");
        }
        assert!(
            !rejection.payload.is_empty() || payload.is_empty(),
            "a rejection lost its payload: {rejection:?}"
        );
    }
    if !decoded.readings.is_empty() || decoded.status.is_some() {
        assert!(valid_gateway_id(&decoded.gateway), "{:?}", decoded.gateway);
    }
    let earliest = DateTime::<Utc>::from_timestamp(946_684_800, 0).expect("2000-01-01 is in range");
    let latest = cx.received_at + cx.max_future;
    for reading in &decoded.readings {
        assert!(reading.value.is_finite(), "{reading:?}");
        assert_eq!(
            ChannelName::parse(reading.channel.as_str()).as_ref(),
            Ok(&reading.channel),
            "an accepted channel name must parse as itself"
        );
        assert_eq!(
            reading.ts.timestamp_subsec_nanos() % 1_000,
            0,
            "{reading:?} is not truncated to microseconds"
        );
        assert!(
            (earliest..=latest).contains(&reading.ts),
            "{reading:?} is outside 2000 .. receive time + max_future"
        );
    }
}

/// How a payload of elements (batch readings, SenML records) was accounted
/// for, checked by [`check_elements`].
struct Elements {
    count: usize,
    accounted: usize,
}

impl Elements {
    /// No element yields nothing (a SenML record of base fields may).
    fn exact(&self) {
        assert_eq!(
            self.accounted, self.count,
            "every element is a reading or a rejection"
        );
    }
}

/// A payload is either rejected whole (one rejection carrying the payload,
/// nothing else) or each rejection names one element by index, in order,
/// and no element yields both a reading and a rejection.
fn check_elements(
    payload: &[u8],
    decoded: &Decoded,
    element_prefix: &str,
    count: impl Fn(&Value) -> Option<usize>,
) -> Elements {
    let whole: Vec<_> = decoded
        .rejections
        .iter()
        .filter(|r| !r.reason.starts_with(element_prefix))
        .collect();
    if let [whole] = whole.as_slice() {
        assert!(decoded.readings.is_empty() && decoded.rejections.len() == 1);
        assert_eq!(
            whole.payload, payload,
            "a whole rejection keeps the payload"
        );
        return Elements {
            count: 0,
            accounted: 0,
        };
    }
    assert!(whole.is_empty(), "several whole rejections: {whole:?}");
    let pack: Value = serde_json::from_slice(payload).expect("a decoded payload is JSON");
    let count = count(&pack).expect("a decoded payload has its elements");
    let mut previous = None;
    for rejection in &decoded.rejections {
        let index: usize = rejection.reason[element_prefix.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("no element index in {:?}", rejection.reason));
        assert!(index < count, "{:?} of {count} elements", rejection.reason);
        assert!(previous < Some(index), "rejections out of order");
        previous = Some(index);
    }
    let accounted = decoded.readings.len() + decoded.rejections.len();
    assert!(
        accounted <= count,
        "{accounted} results from {count} elements"
    );
    Elements { count, accounted }
}

//! One session at a time, message by message: what a node sends, what is
//! stored, what is rejected, and what it is asked.

use chrono::TimeDelta;
use prost::Message as _;

use super::proto::{Metric, Payload, Value, datatype};
use super::*;
use crate::config::SparkplugNode;

const NOW_MS: u64 = 1_795_860_000_000; // 2026-11-28T10:00:00Z

fn cx() -> DecodeContext {
    DecodeContext::new(
        DateTime::from_timestamp_millis(NOW_MS as i64).unwrap(),
        TimeDelta::hours(1),
    )
}

fn sessions(config: SparkplugConfig) -> Sessions {
    Sessions::new(config, Arc::new(Metrics::default()))
}

fn metric(name: Option<&str>, alias: u64, datatype: u32, value: Value) -> Metric {
    Metric {
        name: name.map(str::to_owned),
        alias: Some(alias),
        datatype: Some(datatype),
        value: Some(value),
        ..Metric::default()
    }
}

fn bd_seq(value: u64) -> Metric {
    Metric {
        name: Some("bdSeq".into()),
        datatype: Some(datatype::INT64),
        value: Some(Value::LongValue(value)),
        ..Metric::default()
    }
}

fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(NOW_MS - 1_000),
        metrics,
        seq,
        ..Payload::default()
    }
    .encode_to_vec()
}

fn readings(decoded: &Decoded) -> Vec<(String, f64)> {
    decoded
        .readings
        .iter()
        .map(|r| (r.channel.to_string(), r.value))
        .collect()
}

fn reasons(decoded: &Decoded) -> Vec<String> {
    decoded
        .rejections
        .iter()
        .map(|r| r.reason.clone())
        .collect()
}

const NBIRTH: &str = "spBv1.0/yard/NBIRTH/gw1";
const NDATA: &str = "spBv1.0/yard/NDATA/gw1";
const NDEATH: &str = "spBv1.0/yard/NDEATH/gw1";

fn born(s: &Sessions) {
    let birth = payload(
        Some(0),
        vec![
            bd_seq(7),
            metric(
                Some("T101/relay_voltage"),
                1,
                datatype::DOUBLE,
                Value::DoubleValue(1.5),
            ),
            metric(
                Some("T101/relay_state"),
                2,
                datatype::BOOLEAN,
                Value::BooleanValue(true),
            ),
            metric(
                Some("Node Control/Rebirth"),
                3,
                datatype::BOOLEAN,
                Value::BooleanValue(false),
            ),
        ],
    );
    let decoded = s.decode(NBIRTH, &birth, &cx(), true);
    assert_eq!(decoded.status, Some(GatewayStatus::Online));
    assert_eq!(decoded.gateway, "gw1");
    assert_eq!(
        readings(&decoded),
        [
            ("T101/relay_voltage".into(), 1.5),
            ("T101/relay_state".into(), 1.0)
        ]
    );
    assert!(decoded.rejections.is_empty(), "{:?}", reasons(&decoded));
}

/// The wire bytes of a Sparkplug B payload, assembled by hand from the
/// published field numbers, decode through the prost messages: the field
/// numbers and types are the definition's.
#[test]
fn decodes_the_published_wire_format() {
    let mut bytes = vec![0x08, 0x2a]; // timestamp = 42
    let metric = {
        let mut m = vec![0x0a, 0x01, b'x']; // name = "x"
        m.extend([0x10, 0x05]); // alias = 5
        m.extend([0x20, 0x0a]); // datatype = Double
        m.push(0x69); // field 13 (double_value), fixed64
        m.extend(2.25f64.to_le_bytes());
        m.extend([0x8a, 0x01, 0x00]); // field 17 (dataset_value), empty: skipped
        m
    };
    bytes.push(0x12); // metrics, length-delimited
    bytes.push(metric.len() as u8);
    bytes.extend(&metric);
    bytes.extend([0x18, 0xff, 0x01]); // seq = 255
    let payload = Payload::decode(bytes.as_slice()).unwrap();
    assert_eq!(payload.timestamp, Some(42));
    assert_eq!(payload.seq, Some(255));
    let m = &payload.metrics[0];
    assert_eq!(
        (m.name.as_deref(), m.alias, m.datatype, m.value.clone()),
        (
            Some("x"),
            Some(5),
            Some(datatype::DOUBLE),
            Some(Value::DoubleValue(2.25))
        )
    );
}

#[test]
fn birth_then_data_by_alias_then_death() {
    let s = sessions(SparkplugConfig::default());
    born(&s);
    let data = s.decode(
        NDATA,
        &payload(
            Some(1),
            vec![
                metric(None, 1, datatype::DOUBLE, Value::DoubleValue(1.25)),
                metric(None, 2, datatype::BOOLEAN, Value::BooleanValue(false)),
                metric(None, 3, datatype::BOOLEAN, Value::BooleanValue(true)),
            ],
        ),
        &cx(),
        true,
    );
    assert_eq!(
        readings(&data),
        [
            ("T101/relay_voltage".into(), 1.25),
            ("T101/relay_state".into(), 0.0)
        ]
    );
    assert!(data.rejections.is_empty(), "{:?}", reasons(&data));
    assert_eq!(data.status, None);
    assert_eq!(
        data.readings[0].ts,
        DateTime::from_timestamp_millis(NOW_MS as i64 - 1_000).unwrap()
    );

    let death = s.decode(NDEATH, &payload(None, vec![bd_seq(7)]), &cx(), true);
    assert_eq!(death.status, Some(GatewayStatus::Offline));
    assert!(death.rejections.is_empty());
    let after = s.decode(
        NDATA,
        &payload(Some(2), vec![metric(None, 1, 10, Value::DoubleValue(1.0))]),
        &cx(),
        true,
    );
    assert!(after.readings.is_empty());
    assert!(
        reasons(&after)[0].contains("before the edge node's NBIRTH"),
        "{:?}",
        reasons(&after)
    );
}

#[test]
fn sequence_gaps_are_rejected_counted_and_ask_for_rebirth() {
    let metrics = Arc::new(Metrics::default());
    let s = Sessions::new(SparkplugConfig::default(), metrics.clone());
    let mut commands = s.take_commands().unwrap();
    born(&s);
    let data = |seq| {
        payload(
            Some(seq),
            vec![metric(None, 1, datatype::DOUBLE, Value::DoubleValue(2.0))],
        )
    };
    assert!(s.decode(NDATA, &data(1), &cx(), true).rejections.is_empty());
    let gap = s.decode(NDATA, &data(4), &cx(), true);
    assert_eq!(
        readings(&gap),
        [("T101/relay_voltage".into(), 2.0)],
        "the readings are kept"
    );
    assert_eq!(gap.rejections.len(), 1);
    assert_eq!(gap.rejections[0].kind, RejectionKind::Sequence);
    assert!(
        gap.rejections[0]
            .reason
            .contains("seq 4 where 2 was due: 2 messages lost")
    );
    assert_eq!(gap.rejections[0].payload, data(4));
    assert_eq!(metrics.sparkplug_sequence_gaps.load(Relaxed), 1);
    let command = commands.try_recv().unwrap();
    assert_eq!(command.topic, "spBv1.0/yard/NCMD/gw1");
    let request = Payload::decode(command.payload.as_slice()).unwrap();
    assert_eq!(
        request.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );
    assert_eq!(request.metrics[0].value, Some(Value::BooleanValue(true)));

    // The count goes on from the late message; a second gap within the
    // interval does not ask again.
    assert!(s.decode(NDATA, &data(5), &cx(), true).rejections.is_empty());
    assert_eq!(s.decode(NDATA, &data(9), &cx(), true).rejections.len(), 1);
    assert!(commands.try_recv().is_err());
    assert_eq!(metrics.sparkplug_rebirth_requests.load(Relaxed), 1);
}

#[test]
fn sequence_wraps_after_255() {
    let s = sessions(SparkplugConfig::default());
    born(&s);
    for seq in (1..=255).chain(0..=3) {
        let decoded = s.decode(
            NDATA,
            &payload(
                Some(seq),
                vec![metric(None, 1, 10, Value::DoubleValue(1.0))],
            ),
            &cx(),
            true,
        );
        assert!(
            decoded.rejections.is_empty(),
            "seq {seq}: {:?}",
            reasons(&decoded)
        );
    }
}

#[test]
fn a_late_will_of_an_earlier_session_changes_nothing() {
    let s = sessions(SparkplugConfig::default());
    born(&s);
    let stale = s.decode(NDEATH, &payload(None, vec![bd_seq(6)]), &cx(), true);
    assert_eq!(stale.status, None);
    assert_eq!(stale.rejections[0].kind, RejectionKind::Sequence);
    assert!(
        stale.rejections[0]
            .reason
            .contains("bdSeq 6 is not the current birth's (7)")
    );
    let data = s.decode(
        NDATA,
        &payload(Some(1), vec![metric(None, 1, 10, Value::DoubleValue(3.0))]),
        &cx(),
        true,
    );
    assert_eq!(readings(&data), [("T101/relay_voltage".into(), 3.0)]);
}

#[test]
fn bad_metrics_are_rejected_one_by_one() {
    let s = sessions(SparkplugConfig::default());
    born(&s);
    let decoded = s.decode(
        NDATA,
        &payload(
            Some(1),
            vec![
                metric(None, 1, datatype::DOUBLE, Value::FloatValue(1.0)),
                metric(None, 9, datatype::DOUBLE, Value::DoubleValue(1.0)),
                Metric {
                    alias: Some(1),
                    datatype: Some(datatype::DOUBLE),
                    value: Some(Value::DoubleValue(f64::NAN)),
                    ..Metric::default()
                },
                Metric {
                    alias: Some(1),
                    value: Some(Value::DoubleValue(1.0)),
                    timestamp: Some(1_000),
                    ..Metric::default()
                },
                Metric {
                    alias: Some(1),
                    is_null: Some(true),
                    ..Metric::default()
                },
                Metric {
                    alias: Some(1),
                    value: Some(Value::DoubleValue(4.5)),
                    ..Metric::default()
                },
            ],
        ),
        &cx(),
        true,
    );
    assert_eq!(readings(&decoded), [("T101/relay_voltage".into(), 4.5)]);
    let reasons = reasons(&decoded);
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].contains("metrics[0]")
            && reasons[0].contains("declared Double at birth, but the value is a float_value")
    );
    assert!(reasons[1].contains("metrics[1]: alias 9 was not declared at birth"));
    assert!(reasons[2].contains("metrics[2]") && reasons[2].contains("finite"));
    assert!(reasons[3].contains("metrics[3]") && reasons[3].contains("before 2000"));
    assert!(
        decoded
            .rejections
            .iter()
            .all(|r| r.kind == RejectionKind::Reading)
    );
}

#[test]
fn undecodable_payloads_and_topics_are_rejected() {
    let s = sessions(SparkplugConfig::default());
    let garbage = s.decode(NBIRTH, b"\xff\xff\xff", &cx(), true);
    assert_eq!(garbage.rejections[0].kind, RejectionKind::Payload);
    assert!(
        garbage.rejections[0]
            .reason
            .contains("not a Sparkplug B payload")
    );
    assert_eq!(garbage.rejections[0].payload, b"\xff\xff\xff");
    assert_eq!(garbage.status, None);

    for (topic, want) in [
        (
            "spBv1.0/yard/NDATA/gw1/T1",
            "not a Sparkplug B message type",
        ),
        ("spBv1.0/yard/DDATA/gw1", "not a Sparkplug B message type"),
        ("spBv1.0/yard/NBIRTH/gw 1", "is not a gateway id"),
        ("spBv1.0/yard", "not a Sparkplug B topic"),
        (
            "/tenants/gw2/spBv1.0/yard/NBIRTH/gw1",
            "certificate of gateway `gw2`",
        ),
    ] {
        let decoded = s.decode(topic, b"", &cx(), true);
        assert!(
            decoded.rejections[0].reason.contains(want),
            "{topic}: {:?}",
            reasons(&decoded)
        );
    }
    for ignored in [
        "spBv1.0/yard/NCMD/gw1",
        "spBv1.0/yard/DCMD/gw1/T1",
        "spBv1.0/STATE/host",
    ] {
        assert_eq!(s.decode(ignored, b"x", &cx(), true), Decoded::default());
    }
    assert!(is_sparkplug("spBv1.0/yard/NBIRTH/gw1"));
    assert!(is_sparkplug("/tenants/gw1/spBv1.0/yard/NBIRTH/gw1"));
    assert!(!is_sparkplug("spBv1.00/x") && !is_sparkplug("trackside/gw1/readings"));
}

#[test]
fn tenant_prefixed_sessions_are_asked_under_their_prefix() {
    let s = sessions(SparkplugConfig::default());
    let mut commands = s.take_commands().unwrap();
    let decoded = s.decode(
        "/tenants/gw1/spBv1.0/yard/NDATA/gw1",
        &payload(Some(1), vec![]),
        &cx(),
        true,
    );
    assert_eq!(decoded.gateway, "gw1");
    assert_eq!(
        commands.try_recv().unwrap().topic,
        "/tenants/gw1/spBv1.0/yard/NCMD/gw1"
    );
}

#[test]
fn devices_map_to_circuits_and_their_death_takes_the_gateway_offline() {
    let config = SparkplugConfig {
        nodes: vec![SparkplugNode {
            group: Some("yard".into()),
            edge_node: "gw1".into(),
            device: Some("rtu-7".into()),
            circuit: Some("T107".into()),
            metrics: [
                ("Relay/Volts".to_owned(), "relay_voltage".to_owned()),
                ("Feed/Amps".to_owned(), "T108/feed_current".to_owned()),
            ]
            .into(),
        }],
        ..SparkplugConfig::default()
    };
    let s = sessions(config);
    born(&s);
    let birth = s.decode(
        "spBv1.0/yard/DBIRTH/gw1/rtu-7",
        &payload(
            Some(1),
            vec![
                metric(
                    Some("Relay/Volts"),
                    10,
                    datatype::FLOAT,
                    Value::FloatValue(1.5),
                ),
                metric(
                    Some("Feed/Amps"),
                    11,
                    datatype::INT16,
                    Value::IntValue(0xffff),
                ),
                metric(
                    Some("feed_voltage"),
                    12,
                    datatype::UINT32,
                    Value::IntValue(9),
                ),
                metric(
                    Some("Name"),
                    13,
                    datatype::STRING,
                    Value::StringValue("RTU".into()),
                ),
                metric(
                    Some("bad name!"),
                    14,
                    datatype::DOUBLE,
                    Value::DoubleValue(0.0),
                ),
            ],
        ),
        &cx(),
        true,
    );
    assert_eq!(
        readings(&birth),
        [
            ("T107/relay_voltage".into(), 1.5),
            ("T108/feed_current".into(), -1.0),
            ("T107/feed_voltage".into(), 9.0),
        ]
    );
    let reasons_ = reasons(&birth);
    assert_eq!(reasons_.len(), 1, "{reasons_:?}");
    assert!(
        reasons_[0].starts_with("DBIRTH: 2 metrics map to no channel"),
        "{reasons_:?}"
    );
    assert!(reasons_[0].contains("`Name`: datatype String is not a number"));
    assert_eq!(birth.status, Some(GatewayStatus::Online));

    // An unmapped metric's data is ignored, not rejected again.
    let data = s.decode(
        "spBv1.0/yard/DDATA/gw1/rtu-7",
        &payload(
            Some(2),
            vec![
                metric(None, 13, datatype::STRING, Value::StringValue("x".into())),
                metric(None, 10, datatype::FLOAT, Value::FloatValue(2.0)),
            ],
        ),
        &cx(),
        true,
    );
    assert_eq!(readings(&data), [("T107/relay_voltage".into(), 2.0)]);
    assert!(data.rejections.is_empty(), "{:?}", reasons(&data));

    let death = s.decode(
        "spBv1.0/yard/DDEATH/gw1/rtu-7",
        &payload(Some(3), vec![]),
        &cx(),
        true,
    );
    assert_eq!(death.status, Some(GatewayStatus::Offline));
    let orphan = s.decode(
        "spBv1.0/yard/DDATA/gw1/rtu-7",
        &payload(
            Some(4),
            vec![metric(None, 10, datatype::FLOAT, Value::FloatValue(2.0))],
        ),
        &cx(),
        true,
    );
    assert!(reasons(&orphan)[0].contains("before device `rtu-7`'s DBIRTH"));
    // The node's own metrics go on.
    let own = s.decode(
        NDATA,
        &payload(Some(5), vec![metric(None, 1, 10, Value::DoubleValue(1.0))]),
        &cx(),
        true,
    );
    assert_eq!(readings(&own).len(), 1);
    assert!(own.rejections.is_empty());
}

#[test]
fn bounds_on_nodes_aliases_and_metrics() {
    let s = sessions(SparkplugConfig {
        max_nodes: 1,
        max_aliases_per_node: 4,
        max_metrics_per_payload: 4,
        ..SparkplugConfig::default()
    });
    born(&s); // four metrics of its own: at the alias bound
    let other = s.decode(
        "spBv1.0/yard/NBIRTH/gw2",
        &payload(Some(0), vec![]),
        &cx(),
        true,
    );
    assert_eq!(other.rejections[0].kind, RejectionKind::Bound);
    assert_eq!(other.status, None);
    let device = s.decode(
        "spBv1.0/yard/DBIRTH/gw1/T5",
        &payload(
            Some(1),
            vec![metric(
                Some("relay_voltage"),
                20,
                10,
                Value::DoubleValue(1.0),
            )],
        ),
        &cx(),
        true,
    );
    assert_eq!(device.rejections[0].kind, RejectionKind::Bound);
    assert!(device.readings.is_empty());
    let many = s.decode(
        NDATA,
        &payload(Some(2), vec![Metric::default(); 5]),
        &cx(),
        true,
    );
    assert_eq!(many.rejections.len(), 1);
    assert!(
        many.rejections[0]
            .reason
            .contains("max_metrics_per_payload")
    );
}

#[test]
fn the_stored_share_reads_the_session_without_following_it() {
    let s = sessions(SparkplugConfig::default());
    born(&s);
    let data = payload(Some(5), vec![metric(None, 1, 10, Value::DoubleValue(1.0))]);
    let stored = s.decode(NDATA, &data, &cx(), false);
    assert_eq!(readings(&stored).len(), 1);
    assert!(stored.rejections.is_empty(), "no sequence check on a share");
    // The followed sequence is untouched: 1 is still due.
    let live = s.decode(NDATA, &payload(Some(1), vec![]), &cx(), true);
    assert!(live.rejections.is_empty(), "{:?}", reasons(&live));
}

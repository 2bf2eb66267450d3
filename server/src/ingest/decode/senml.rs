//! SenML JSON (RFC 8428) on `trackside/{gateway}/senml`.
//!
//! A pack is an array of records. Base fields (`bn`, `bt`, `bu`, `bv`) apply
//! to the record that carries them and every later one until changed. A
//! record's name is `bn + n` and must be a channel name,
//! `{circuit}/{parameter}` (so `"bn": "T101/"` with `"n": "relay_voltage"`).
//! Its time is `bt + t` in seconds: at or above 2^28 it is Unix time, below
//! it is relative to the receive time (RFC 8428 section 4.5.3), so a pack
//! without times is stamped on receipt. The value is `bv + v`, or `vb` as
//! 1/0 (a relay state); string and data values are rejected. SenML units
//! are SI base units, so `A` for a parameter kept in `mA` (and `V` for
//! `mV`) is scaled by 1000; any other unit that differs from the
//! parameter's is rejected rather than stored under the wrong unit.
//! Each bad record is rejected alone, with its JSON and a reason.

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;
use trackside_wire::{ChannelName, parameter_info};

use super::{DecodeContext, Decoded, DecodedReading, RejectionKind, check_ts, rejection};

/// RFC 8428: times below 2^28 seconds are relative to now.
const RELATIVE_BELOW_S: f64 = 268_435_456.0;

#[derive(Deserialize, Default)]
struct Record {
    bn: Option<String>,
    bt: Option<f64>,
    bu: Option<String>,
    bv: Option<f64>,
    n: Option<String>,
    u: Option<String>,
    v: Option<f64>,
    vb: Option<bool>,
    vs: Option<String>,
    vd: Option<String>,
    t: Option<f64>,
    // Accepted and not used: the version, sums and update intervals.
    #[allow(dead_code)]
    bver: Option<i64>,
    #[allow(dead_code)]
    s: Option<f64>,
    #[allow(dead_code)]
    ut: Option<f64>,
}

#[derive(Default)]
struct Base {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
}

pub(super) fn decode(topic: &str, gateway: &str, payload: &[u8], cx: &DecodeContext) -> Decoded {
    let mut decoded = Decoded {
        gateway: gateway.to_owned(),
        ..Decoded::default()
    };
    let records: Vec<Value> = match serde_json::from_slice(payload) {
        Ok(records) => records,
        Err(err) => {
            decoded.rejections.push(rejection(
                topic,
                Some(gateway),
                payload.to_vec(),
                format!("not a SenML pack (a JSON array of records): {err}"),
                RejectionKind::Payload,
            ));
            return decoded;
        }
    };
    let mut base = Base::default();
    decoded.readings.reserve(records.len());
    for (index, element) in records.into_iter().enumerate() {
        match decode_record(&element, &mut base, cx) {
            Ok(Some(reading)) => decoded.readings.push(reading),
            // A record of base fields only.
            Ok(None) => {}
            Err(reason) => decoded.rejections.push(rejection(
                topic,
                Some(gateway),
                serde_json::to_vec(&element).unwrap_or_default(),
                format!("record {index}: {reason}"),
                RejectionKind::Reading,
            )),
        }
    }
    decoded
}

fn decode_record(
    element: &Value,
    base: &mut Base,
    cx: &DecodeContext,
) -> Result<Option<DecodedReading>, String> {
    let record = Record::deserialize(element).map_err(|err| err.to_string())?;
    if let Some(bn) = record.bn {
        base.name = bn;
    }
    if let Some(bt) = record.bt {
        base.time = bt;
    }
    if let Some(bu) = record.bu {
        base.unit = Some(bu);
    }
    if let Some(bv) = record.bv {
        base.value = bv;
    }
    if record.vs.is_some() || record.vd.is_some() {
        return Err("string and data values are not readings (use v or vb)".into());
    }
    let raw = match (record.v, record.vb) {
        (Some(v), None) => base.value + v,
        (None, Some(vb)) => f64::from(u8::from(vb)),
        (Some(_), Some(_)) => return Err("a record carries one value: v or vb, not both".into()),
        (None, None) if record.n.is_none() => return Ok(None),
        (None, None) => return Err("record has no value (v or vb)".into()),
    };
    let name = format!("{}{}", base.name, record.n.as_deref().unwrap_or_default());
    let channel = ChannelName::parse(&name)
        .map_err(|err| format!("name {name:?} is not a channel: {err}"))?;
    let unit = record.u.as_deref().or(base.unit.as_deref());
    let value = to_parameter_unit(raw, unit, &channel)?;
    if !value.is_finite() {
        return Err("value must be a finite number".into());
    }
    let seconds = base.time + record.t.unwrap_or(0.0);
    let ts = if seconds.abs() < RELATIVE_BELOW_S {
        cx.received_at + seconds_delta(seconds)?
    } else {
        DateTime::<Utc>::UNIX_EPOCH + seconds_delta(seconds)?
    };
    let ts = check_ts(ts, cx)?;
    Ok(Some(DecodedReading {
        channel,
        ts: ts.trunc_subsecs(6),
        value,
    }))
}

fn seconds_delta(seconds: f64) -> Result<TimeDelta, String> {
    if !seconds.is_finite() || seconds.abs() > 1e11 {
        return Err(format!("time {seconds:e} s is out of range"));
    }
    Ok(TimeDelta::microseconds((seconds * 1e6).round() as i64))
}

/// Converts a SenML value into the unit Trackside keeps the parameter in.
fn to_parameter_unit(value: f64, unit: Option<&str>, channel: &ChannelName) -> Result<f64, String> {
    let expected = parameter_info(channel.parameter()).and_then(|(_, p)| p.unit);
    match (unit, expected) {
        (None, _) | (_, None) => Ok(value),
        (Some(u), Some(e)) if u == e => Ok(value),
        (Some("A"), Some("mA")) | (Some("V"), Some("mV")) => Ok(value * 1000.0),
        (Some(u), Some(e)) => Err(format!(
            "unit {u:?} does not match {}'s unit {e:?}",
            channel.parameter()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;
    use chrono::SecondsFormat;

    fn cx() -> DecodeContext {
        DecodeContext::new(
            DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            TimeDelta::hours(1),
        )
    }

    /// A pack in, the readings stored and the rejection reasons out.
    fn check(pack: &str, readings: &[(&str, &str, f64)], rejections: &[&str]) {
        let decoded = decode("trackside/gw1/senml", pack.as_bytes(), &cx());
        super::super::tests::assert_decoded(
            pack,
            &decoded,
            readings,
            rejections,
            SecondsFormat::Millis,
        );
    }

    #[test]
    fn base_name_time_and_relative_times() {
        check(
            r#"[{"bn":"T101/","bt":1795855200,"n":"relay_voltage","u":"V","v":1.82},
                {"n":"relay_voltage","t":0.5,"v":1.80},
                {"n":"relay_state","vb":true,"t":1}]"#,
            &[
                ("T101/relay_voltage", "2026-11-28T08:40:00.000Z", 1.82),
                ("T101/relay_voltage", "2026-11-28T08:40:00.500Z", 1.80),
                ("T101/relay_state", "2026-11-28T08:40:01.000Z", 1.0),
            ],
            &[],
        );
    }

    #[test]
    fn times_below_2_pow_28_are_relative_to_receipt() {
        check(
            r#"[{"n":"T2/feed_voltage","v":9.1},{"n":"T2/feed_voltage","t":-2.5,"v":9.0}]"#,
            &[
                ("T2/feed_voltage", "2026-11-28T10:00:00.000Z", 9.1),
                ("T2/feed_voltage", "2026-11-28T09:59:57.500Z", 9.0),
            ],
            &[],
        );
    }

    #[test]
    fn base_value_and_si_units_are_converted() {
        check(
            r#"[{"bn":"T3/","bv":100,"n":"relay_current","u":"mA","v":20},
                {"bv":0,"n":"relay_current","u":"A","v":0.142},
                {"n":"rx_level","u":"V","v":0.25},
                {"n":"humidity","u":"%RH","v":80}]"#,
            &[
                ("T3/relay_current", "2026-11-28T10:00:00.000Z", 120.0),
                ("T3/relay_current", "2026-11-28T10:00:00.000Z", 142.0),
                ("T3/rx_level", "2026-11-28T10:00:00.000Z", 250.0),
                ("T3/humidity", "2026-11-28T10:00:00.000Z", 80.0),
            ],
            &[],
        );
    }

    #[test]
    fn bad_records_are_rejected_one_by_one() {
        check(
            r#"[{"bn":"T4/"},
                {"n":"relay_voltage","vs":"high"},
                {"n":"relay_voltage","u":"A","v":1},
                {"n":"relay voltage","v":1},
                {"n":"relay_voltage"},
                {"n":"relay_voltage","v":1,"vb":true},
                {"n":"relay_voltage","v":1.5,"t":900000000},
                {"n":"relay_voltage","v":1.5,"t":1e300},
                {"n":"relay_voltage","v":"1"},
                {"n":"relay_voltage","v":1.6}]"#,
            &[("T4/relay_voltage", "2026-11-28T10:00:00.000Z", 1.6)],
            &[
                "record 1: string and data values",
                "record 2: unit \"A\" does not match relay_voltage's unit \"V\"",
                "record 3: name \"T4/relay voltage\" is not a channel",
                "record 4: record has no value",
                "record 5: a record carries one value",
                "record 6: ts 1998-07-09 16:00:00 UTC is before 2000",
                "record 7: time 1e300 s is out of range",
                "record 8: invalid type",
            ],
        );
    }

    #[test]
    fn not_a_pack() {
        check(r#"{"n":"T1/x","v":1}"#, &[], &["not a SenML pack"]);
        check("[1,2", &[], &["not a SenML pack"]);
    }
}

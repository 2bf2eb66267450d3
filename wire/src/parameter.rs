/// What Trackside knows about a track-circuit parameter: its unit and how to
/// present it. Parameters not in this table are still stored; they just have
/// no unit and sort last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub label: &'static str,
    pub unit: Option<&'static str>,
    /// A discrete channel carries 0 or 1 (relay_state: 0 = dropped = occupied).
    pub discrete: bool,
    /// Decimal places worth showing for this parameter's typical range.
    pub decimals: u8,
}

/// The parameters that yard gateways measure, in the order an operator reads
/// them: state first, then the feed end, then the relay end, then AF values.
pub const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "relay_state",
        label: "Relay",
        unit: None,
        discrete: true,
        decimals: 0,
    },
    Parameter {
        name: "feed_voltage",
        label: "Feed voltage",
        unit: Some("V"),
        discrete: false,
        decimals: 2,
    },
    Parameter {
        name: "feed_current",
        label: "Feed current",
        unit: Some("A"),
        discrete: false,
        decimals: 2,
    },
    Parameter {
        name: "relay_voltage",
        label: "Relay voltage",
        unit: Some("V"),
        discrete: false,
        decimals: 3,
    },
    Parameter {
        name: "relay_current",
        label: "Relay current",
        unit: Some("mA"),
        discrete: false,
        decimals: 1,
    },
    Parameter {
        name: "frequency",
        label: "Frequency",
        unit: Some("Hz"),
        discrete: false,
        decimals: 1,
    },
    Parameter {
        name: "rx_level",
        label: "Rx level",
        unit: Some("mV"),
        discrete: false,
        decimals: 1,
    },
];

/// Looks a parameter up by its name in a channel (`relay_voltage`), with its
/// position in [`PARAMETERS`] for ordering.
pub fn parameter_info(name: &str) -> Option<(usize, &'static Parameter)> {
    PARAMETERS.iter().enumerate().find(|(_, p)| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_parameters_have_their_units() {
        assert_eq!(
            parameter_info("relay_current").map(|(_, p)| p.unit),
            Some(Some("mA"))
        );
        assert_eq!(
            parameter_info("relay_state").map(|(_, p)| p.discrete),
            Some(true)
        );
        assert!(parameter_info("humidity").is_none());
    }
}

//! The four distribution scenarios: pure rules, no API calls.

use crate::api::{Party, ServiceType, Settlement};

/// How a product is sold, computed from the types of the ISV's Service and of
/// the distributor's DerivedService (or a direct purchase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Private derived from Private: the customer owns the resources.
    Scenario1,
    /// FullyManaged derived from Private: the distributor owns the resources.
    Scenario2,
    /// FullyManaged derived from a listed FullyManaged: the ISV owns them, online settlement.
    Scenario3,
    /// FullyManaged derived from an unlisted FullyManaged: the ISV owns them, offline settlement.
    Scenario4,
    /// A Private Service bought from the ISV directly.
    DirectPrivate,
    /// A FullyManaged Service bought from the ISV directly.
    DirectFullyManaged,
}

/// The one combination the model forbids.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a FullyManaged Service cannot be resold as a Private DerivedService: its resources belong to the ISV and cannot be handed to the customer; publish the DerivedService as FullyManaged (scenario 3 or 4)"
)]
pub struct InvalidScenario;

impl Scenario {
    /// Scenario of a distributor's product.
    pub fn derived(
        source_type: ServiceType,
        source_listed: bool,
        derived_type: ServiceType,
    ) -> Result<Self, InvalidScenario> {
        use ServiceType::*;
        match (source_type, derived_type) {
            (Private, Private) => Ok(Scenario::Scenario1),
            (Private, FullyManaged) => Ok(Scenario::Scenario2),
            (FullyManaged, FullyManaged) if source_listed => Ok(Scenario::Scenario3),
            (FullyManaged, FullyManaged) => Ok(Scenario::Scenario4),
            (FullyManaged, Private) => Err(InvalidScenario),
        }
    }

    /// Scenario of a direct purchase from the ISV.
    pub fn direct(source_type: ServiceType) -> Self {
        match source_type {
            ServiceType::Private => Scenario::DirectPrivate,
            ServiceType::FullyManaged => Scenario::DirectFullyManaged,
        }
    }

    /// Name as shown in status and printer columns.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scenario::Scenario1 => "Scenario1",
            Scenario::Scenario2 => "Scenario2",
            Scenario::Scenario3 => "Scenario3",
            Scenario::Scenario4 => "Scenario4",
            Scenario::DirectPrivate => "DirectPrivate",
            Scenario::DirectFullyManaged => "DirectFullyManaged",
        }
    }

    /// The scenario named `s` (as written by `as_str`).
    pub fn parse(s: &str) -> Option<Self> {
        use Scenario::*;
        [
            Scenario1,
            Scenario2,
            Scenario3,
            Scenario4,
            DirectPrivate,
            DirectFullyManaged,
        ]
        .into_iter()
        .find(|sc| sc.as_str() == s)
    }

    /// Online only in scenario 3 (both products on the marketplace).
    pub fn settlement(&self) -> Settlement {
        match self {
            Scenario::Scenario3 => Settlement::Online,
            _ => Settlement::Offline,
        }
    }

    /// Who owns the resources and pays the resource fees.
    pub fn resource_owner(&self) -> Party {
        match self {
            Scenario::Scenario1 | Scenario::DirectPrivate => Party::Customer,
            Scenario::Scenario2 => Party::Distributor,
            Scenario::Scenario3 | Scenario::Scenario4 | Scenario::DirectFullyManaged => Party::Isv,
        }
    }

    /// Who the customer pays service fees to.
    pub fn service_fees_paid_to(&self) -> Party {
        match self {
            Scenario::DirectPrivate | Scenario::DirectFullyManaged => Party::Isv,
            _ => Party::Distributor,
        }
    }

    /// Whether the resources live in a namespace created for the instance.
    pub fn is_managed(&self) -> bool {
        self.resource_owner() != Party::Customer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceType::*;

    #[test]
    fn scenario_table() {
        // (ISV type, listed, derived type) -> scenario, settlement, owner
        let rows = [
            (
                Private,
                false,
                Private,
                Scenario::Scenario1,
                Settlement::Offline,
                Party::Customer,
            ),
            (
                Private,
                true,
                Private,
                Scenario::Scenario1,
                Settlement::Offline,
                Party::Customer,
            ),
            (
                Private,
                false,
                FullyManaged,
                Scenario::Scenario2,
                Settlement::Offline,
                Party::Distributor,
            ),
            (
                Private,
                true,
                FullyManaged,
                Scenario::Scenario2,
                Settlement::Offline,
                Party::Distributor,
            ),
            (
                FullyManaged,
                true,
                FullyManaged,
                Scenario::Scenario3,
                Settlement::Online,
                Party::Isv,
            ),
            (
                FullyManaged,
                false,
                FullyManaged,
                Scenario::Scenario4,
                Settlement::Offline,
                Party::Isv,
            ),
        ];
        for (src, listed, derived, want, settlement, owner) in rows {
            let got = Scenario::derived(src, listed, derived).unwrap();
            assert_eq!(got, want, "{src:?} listed={listed} -> {derived:?}");
            assert_eq!(got.settlement(), settlement);
            assert_eq!(got.resource_owner(), owner);
            assert_eq!(got.service_fees_paid_to(), Party::Distributor);
        }
    }

    #[test]
    fn fully_managed_derived_as_private_is_rejected_with_the_rule() {
        for listed in [true, false] {
            let err = Scenario::derived(FullyManaged, listed, Private).unwrap_err();
            assert!(err.to_string().contains("cannot be resold as a Private"));
        }
    }

    #[test]
    fn direct_purchases() {
        assert_eq!(Scenario::direct(Private).resource_owner(), Party::Customer);
        assert!(!Scenario::direct(Private).is_managed());
        assert_eq!(Scenario::direct(FullyManaged).resource_owner(), Party::Isv);
        assert!(Scenario::direct(FullyManaged).is_managed());
        assert_eq!(
            Scenario::direct(FullyManaged).settlement(),
            Settlement::Offline
        );
        assert_eq!(
            Scenario::direct(FullyManaged).service_fees_paid_to(),
            Party::Isv
        );
    }
}

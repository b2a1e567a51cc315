use super::*;
use crate::api::{MeteringDimension, PayAsYouGoPrice, SubscriptionPrice, Trial, UnitPrice};

fn t(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

/// Days of one second, so that a test reads in seconds.
fn clock() -> Clock {
    Clock {
        day: Duration::from_secs(1),
    }
}

fn plan() -> PlanPricing {
    PlanPricing {
        subscription: Some(SubscriptionPrice {
            price: "10".into(),
            period: "P10D".into(),
        }),
        pay_as_you_go: Some(PayAsYouGoPrice {
            prices: vec![UnitPrice {
                dimension: "VirtualCpu".into(),
                price: "0.5".into(),
            }],
            period: "P10D".into(),
        }),
        trial: Some(Trial {
            duration_days: 5,
            on_expiry: ExpiryAction::Suspend,
            retention_days: Some(3),
        }),
    }
}

fn policy() -> CommercePolicy {
    CommercePolicy {
        currency: Some("EUR".into()),
        dimensions: vec![
            MeteringDimension {
                name: "VirtualCpu".into(),
                unit: None,
                aggregation: Aggregation::Sum,
            },
            MeteringDimension {
                name: "Storage".into(),
                unit: None,
                aggregation: Aggregation::Max,
            },
        ],
        late_window_seconds: Some(86_400 * 2),
        expiry_notice_days: vec![1, 3],
    }
}

fn prices() -> Pricing {
    pricing(Some(&policy()), "basic", Some(&plan()), None)
        .expect("valid")
        .expect("priced")
}

fn billing(mode: BillingMode, trial: bool) -> InstanceBilling {
    InstanceBilling {
        mode,
        trial,
        periods: None,
        auto_renew: false,
    }
}

fn inputs<'a>(b: &'a InstanceBilling, p: &'a Pricing, l: &'a Ledger, now: &str) -> TermInputs<'a> {
    TermInputs {
        created: t("2026-01-01T00:00:00Z"),
        billing: b,
        pricing: p,
        ledger: l,
        trial_allowed: true,
        renewable: true,
        managed: true,
        now: t(now),
        clock: clock(),
    }
}

#[test]
fn money_is_exact() {
    assert_eq!(Money::parse("12.5").map(|m| m.0), Ok(12_500_000));
    assert_eq!(
        Money::parse("0.000001").map(|m| m.to_string()),
        Ok("0.000001".into())
    );
    assert_eq!(
        Money::parse("3").map(|m| m.times(7).to_string()),
        Ok("21".into())
    );
    assert_eq!(
        Money::parse("0.1").map(|m| (m + m + m).to_string()),
        Ok("0.3".into())
    );
    for bad in ["", "1.", ".5", "1.1234567", "-1", "1e3", "1234567890123"] {
        assert!(Money::parse(bad).is_err(), "{bad:?} must be refused");
    }
    // The largest price times the largest quantity fits.
    let big = Money::parse("999999999999.999999").expect("max price");
    assert!(big.times(1_000_000_000_000).0 > 0);
}

#[test]
fn periods_are_days() {
    assert_eq!(period_days("P1M"), Ok(30));
    assert_eq!(period_days("P2W"), Ok(14));
    assert_eq!(period_days("P1Y"), Ok(365));
    assert_eq!(period_days("P3D"), Ok(3));
    for bad in ["P0D", "1M", "P1H", "P", "PM"] {
        assert!(period_days(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_reseller_sets_its_prices_and_may_only_shorten_the_trial() {
    let over = PlanPriceOverride {
        plan: "basic".into(),
        subscription: Some("15".into()),
        pay_as_you_go: vec![UnitPrice {
            dimension: "VirtualCpu".into(),
            price: "0.75".into(),
        }],
        trial_days: Some(2),
    };
    let p = pricing(Some(&policy()), "basic", Some(&plan()), Some(Some(&over)))
        .expect("valid")
        .expect("priced");
    assert_eq!(p.customer.subscription, Money::parse("15").ok());
    assert_eq!(p.customer.trial_days, 2);
    let resale = p.resale.expect("the ISV's tier");
    assert_eq!(resale.subscription, Money::parse("10").ok());
    assert_eq!(
        resale.units.get("VirtualCpu"),
        Money::parse("0.5").ok().as_ref()
    );
    let longer = PlanPriceOverride {
        trial_days: Some(6),
        ..over.clone()
    };
    let e = pricing(Some(&policy()), "basic", Some(&plan()), Some(Some(&longer)))
        .expect_err("longer trial");
    assert_eq!(e.reason, "TrialTooLong");
    let undeclared = PlanPriceOverride {
        pay_as_you_go: vec![UnitPrice {
            dimension: "Gpu".into(),
            price: "1".into(),
        }],
        ..over
    };
    assert_eq!(
        pricing(
            Some(&policy()),
            "basic",
            Some(&plan()),
            Some(Some(&undeclared))
        )
        .expect_err("undeclared")
        .reason,
        "InvalidPrice"
    );
    // A plan without pricing is free: no commerce at all.
    assert_eq!(pricing(Some(&policy()), "basic", None, None), Ok(None));
}

#[test]
fn a_trial_warns_then_suspends_and_a_conversion_pays_from_its_end() {
    let p = prices();
    let b = billing(BillingMode::Subscription, true);
    let l = Ledger::default();
    let day1 = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:01Z")).expect("trial");
    assert!(day1.trial && day1.ledger.trial_started);
    assert_eq!(day1.expire, Some(t("2026-01-01T00:00:05Z")));
    assert_eq!(day1.biz, BizStatus::Normal);
    // Notices at 3 and 1 days before the end; the next wake is the first.
    assert_eq!(day1.wake, Some(t("2026-01-01T00:00:02Z")));
    let day3 = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:03Z")).expect("trial");
    assert_eq!((day3.biz, day3.notice), (BizStatus::Expiring, Some(3)));
    let after = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:06Z")).expect("trial");
    assert_eq!(after.biz, BizStatus::Suspended);
    assert!(after.suspend && !after.remove);
    // Converted during the trial: paid from the trial's end, one period.
    let paid = billing(BillingMode::Subscription, false);
    let conv = terms(&inputs(&paid, &p, &day1.ledger, "2026-01-01T00:00:03Z")).expect("paid");
    assert!(!conv.trial && !conv.suspend);
    assert_eq!(
        conv.ledger.paid_from.as_deref(),
        Some("2026-01-01T00:00:05Z")
    );
    assert_eq!(conv.expire, Some(t("2026-01-01T00:00:15Z")));
    // Only the trial term has begun; the paid one begins at its start.
    assert_eq!(conv.terms.len(), 1);
    assert!(conv.terms[0].trial);
    // Converted after it ended: paid from the conversion.
    let late = terms(&inputs(&paid, &p, &day1.ledger, "2026-01-01T00:00:08Z")).expect("paid");
    assert_eq!(
        late.ledger.paid_from.as_deref(),
        Some("2026-01-01T00:00:08Z")
    );
    assert_eq!(late.biz, BizStatus::Normal);
    assert_eq!(
        late.terms
            .iter()
            .map(|p| (p.index, p.trial))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, false)]
    );
}

#[test]
fn a_trial_ends_deleted_after_its_retention_and_is_had_once() {
    let mut plan = plan();
    if let Some(tr) = plan.trial.as_mut() {
        tr.on_expiry = ExpiryAction::Delete;
    }
    let p = pricing(Some(&policy()), "basic", Some(&plan), None)
        .expect("ok")
        .expect("priced");
    let b = billing(BillingMode::Subscription, true);
    let l = Ledger::default();
    let kept = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:07Z")).expect("trial");
    assert!(kept.suspend && !kept.remove);
    assert_eq!(kept.wake, Some(t("2026-01-01T00:00:08Z")));
    let gone = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:08Z")).expect("trial");
    assert!(gone.remove);
    let mut second = inputs(&b, &p, &l, "2026-01-01T00:00:01Z");
    second.trial_allowed = false;
    assert_eq!(
        terms(&second).expect_err("second trial").reason,
        "TrialAlreadyUsed"
    );
    // A private instance's term ends Expired, never scaled down.
    let mut private = inputs(&b, &p, &l, "2026-01-01T00:00:06Z");
    private.managed = false;
    let ended = terms(&private).expect("trial");
    assert_eq!(ended.biz, BizStatus::Expired);
    assert!(!ended.suspend);
}

#[test]
fn subscriptions_renew_by_hand_or_by_themselves() {
    let p = prices();
    let l = Ledger::default();
    let mut b = billing(BillingMode::Subscription, false);
    let one = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:09Z")).expect("paid");
    assert_eq!(one.expire, Some(t("2026-01-01T00:00:10Z")));
    assert_eq!(one.biz, BizStatus::Expiring);
    b.periods = Some(3);
    let three = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:25Z")).expect("paid");
    assert_eq!(three.expire, Some(t("2026-01-01T00:00:30Z")));
    assert_eq!(three.terms.len(), 3);
    let over = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:31Z")).expect("paid");
    assert!(over.suspend);
    // Automatic: renewed as often as needed, recorded in the ledger.
    b.periods = None;
    b.auto_renew = true;
    let auto = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:25Z")).expect("paid");
    assert_eq!((auto.ledger.renewed, auto.renewed_now), (2, 2));
    assert_eq!(auto.expire, Some(t("2026-01-01T00:00:30Z")));
    assert_eq!(auto.biz, BizStatus::Normal);
    let again = terms(&inputs(&b, &p, &auto.ledger, "2026-01-01T00:00:28Z")).expect("paid");
    assert_eq!((again.renewed_now, again.biz), (0, BizStatus::Renewing));
    // The product can no longer be sold: the renewal fails and it ends.
    let mut stopped = inputs(&b, &p, &auto.ledger, "2026-01-01T00:00:28Z");
    stopped.renewable = false;
    assert_eq!(terms(&stopped).expect("paid").biz, BizStatus::RenewFailed);
    stopped.now = t("2026-01-01T00:00:31Z");
    let ended = terms(&stopped).expect("paid");
    assert!(ended.suspend);
    assert_eq!(ended.ledger.renewed, 2);
}

#[test]
fn billing_the_plan_does_not_offer_is_refused() {
    let mut plan = plan();
    plan.subscription = None;
    plan.trial = None;
    let p = pricing(Some(&policy()), "basic", Some(&plan), None)
        .expect("ok")
        .expect("priced");
    let l = Ledger::default();
    let b = billing(BillingMode::Subscription, false);
    assert_eq!(
        terms(&inputs(&b, &p, &l, "2026-01-01T00:00:01Z"))
            .expect_err("no sub")
            .reason,
        "BillingModeNotOffered"
    );
    let b = billing(BillingMode::PayAsYouGo, true);
    assert_eq!(
        terms(&inputs(&b, &p, &l, "2026-01-01T00:00:01Z"))
            .expect_err("no trial")
            .reason,
        "TrialNotOffered"
    );
    let b = billing(BillingMode::PayAsYouGo, false);
    let ok = terms(&inputs(&b, &p, &l, "2026-01-01T00:00:01Z")).expect("payg");
    assert_eq!((ok.expire, ok.biz), (None, BizStatus::Normal));
}

fn record(dim: &str, q: i64, start: &str, end: &str) -> UsageRecordSpec {
    UsageRecordSpec {
        instance: "uid-1".into(),
        instance_name: None,
        dimension: dim.into(),
        quantity: q,
        window_start: start.into(),
        window_end: end.into(),
    }
}

#[test]
fn usage_records_are_decided_by_the_rules() {
    let p = prices();
    let start = t("2026-01-01T00:00:00Z");
    let decide_at = |spec: &UsageRecordSpec, created: &str, settled: u32, accepted: &[Accepted]| {
        decide(
            &RecordView {
                spec,
                created: t(created),
            },
            ("uid-1", "db"),
            start,
            &p,
            clock(),
            settled,
            accepted,
        )
        .reason
    };
    let ok = record(
        "VirtualCpu",
        4,
        "2026-01-01T00:00:01Z",
        "2026-01-01T00:00:02Z",
    );
    assert_eq!(decide_at(&ok, "2026-01-01T00:00:03Z", 0, &[]), "Accepted");
    let accepted = [Accepted {
        dimension: "VirtualCpu".into(),
        start: t("2026-01-01T00:00:01Z"),
        end: t("2026-01-01T00:00:02Z"),
        quantity: 4,
    }];
    assert_eq!(
        decide_at(&ok, "2026-01-01T00:00:03Z", 0, &accepted),
        "Duplicate"
    );
    let overlap = record(
        "VirtualCpu",
        1,
        "2026-01-01T00:00:01.500Z",
        "2026-01-01T00:00:03Z",
    );
    assert_eq!(
        decide_at(&overlap, "2026-01-01T00:00:03Z", 0, &accepted),
        "Overlap"
    );
    // Another dimension's window may overlap.
    let other = record(
        "Storage",
        1,
        "2026-01-01T00:00:01.500Z",
        "2026-01-01T00:00:03Z",
    );
    assert_eq!(
        decide_at(&other, "2026-01-01T00:00:03Z", 0, &accepted),
        "Accepted"
    );
    let mut foreign = ok.clone();
    foreign.instance = "uid-2".into();
    assert_eq!(
        decide_at(&foreign, "2026-01-01T00:00:03Z", 0, &[]),
        "NotThisInstance"
    );
    assert_eq!(
        decide_at(
            &record("Gpu", 1, "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"),
            "2026-01-01T00:00:03Z",
            0,
            &[]
        ),
        "UnknownDimension"
    );
    assert_eq!(
        decide_at(
            &record(
                "VirtualCpu",
                -1,
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:02Z"
            ),
            "2026-01-01T00:00:03Z",
            0,
            &[]
        ),
        "NegativeQuantity"
    );
    // Late window: 2 days (2 s here) after the window's end.
    assert_eq!(decide_at(&ok, "2026-01-01T00:00:04Z", 0, &[]), "Accepted");
    assert_eq!(decide_at(&ok, "2026-01-01T00:00:04.001Z", 0, &[]), "Late");
    // A window ending in the future (beyond the skew).
    assert_eq!(
        decide_at(&ok, "2025-12-31T23:58:00Z", 0, &[]),
        "FutureWindow"
    );
    assert_eq!(
        decide_at(
            &record(
                "VirtualCpu",
                1,
                "2025-12-31T23:59:59Z",
                "2026-01-01T00:00:01Z"
            ),
            "2026-01-01T00:00:02Z",
            0,
            &[]
        ),
        "BeforeStart"
    );
    assert_eq!(
        decide_at(
            &record(
                "VirtualCpu",
                1,
                "2026-01-01T00:00:09Z",
                "2026-01-01T00:00:11Z"
            ),
            "2026-01-01T00:00:11Z",
            0,
            &[]
        ),
        "SpansPeriods"
    );
    assert_eq!(
        decide_at(&ok, "2026-01-01T00:00:03Z", 1, &[]),
        "PeriodClosed"
    );
    let bad = record(
        "VirtualCpu",
        1,
        "2026-01-01T00:00:02Z",
        "2026-01-01T00:00:01Z",
    );
    assert_eq!(
        decide_at(&bad, "2026-01-01T00:00:03Z", 0, &[]),
        "InvalidWindow"
    );
}

#[test]
fn usage_is_rated_per_dimension_and_free_in_the_trial() {
    let p = prices();
    let a = |d: &str, q: i64, s: &str| Accepted {
        dimension: d.into(),
        start: t(s),
        end: t(s) + SignedDuration::from_millis(100),
        quantity: q,
    };
    let records = [
        a("VirtualCpu", 4, "2026-01-01T00:00:01Z"),
        a("VirtualCpu", 6, "2026-01-01T00:00:06Z"),
        a("Storage", 10, "2026-01-01T00:00:02Z"),
        a("Storage", 7, "2026-01-01T00:00:07Z"),
    ];
    let (totals, sum) = rate(&records, &p, &p.customer, None);
    assert_eq!(sum.to_string(), "5");
    assert_eq!(
        totals
            .iter()
            .map(|u| (u.dimension.as_str(), u.quantity, u.amount.as_str()))
            .collect::<Vec<_>>(),
        vec![("Storage", 10, "0"), ("VirtualCpu", 10, "5")]
    );
    // The trial ran until second 5: the first vCPU record is free.
    let (_, in_trial) = rate(&records, &p, &p.customer, Some(t("2026-01-01T00:00:05Z")));
    assert_eq!(in_trial.to_string(), "3");
    assert_eq!(
        usage_period_of(
            t("2026-01-01T00:00:00Z"),
            10,
            clock(),
            t("2026-01-01T00:00:10Z")
        ),
        2
    );
    assert_eq!(
        usage_period(t("2026-01-01T00:00:00Z"), 10, clock(), 2),
        (t("2026-01-01T00:00:10Z"), t("2026-01-01T00:00:20Z"))
    );
}

#[test]
fn a_record_must_name_this_instance_by_uid_and_by_name_when_it_gives_one() {
    let mut r = record(
        "VirtualCpu",
        1,
        "2026-01-01T00:00:10Z",
        "2026-01-01T00:00:20Z",
    );
    assert!(
        !names_another_instance(&r, "uid-1", "db"),
        "UID only, as a cluster administrator may write it"
    );
    r.instance_name = Some("db".into());
    assert!(!names_another_instance(&r, "uid-1", "db"));
    // A sibling's metering account passes admission under its own name
    // ("cache") but names this instance's UID: not this instance's record.
    r.instance_name = Some("cache".into());
    assert!(names_another_instance(&r, "uid-1", "db"));
    r.instance_name = Some("db".into());
    assert!(names_another_instance(&r, "uid-2", "db"));
}

//! The LB conformance suite: every check of the LB contract written once and run
//! against each kind of LB podgate drives — the built-in proxy through the HTTP
//! contract, real HAProxy and real Caddy. A check sees only [`Lb`]: the adapter, the
//! data-plane address, kill and launch hooks and the kind's capabilities, so a new
//! adapter passes the same suite by adding a kind.
//!
//! Tests are named `<kind>::<check>`, e.g. `haproxy::scale_out_drain_and_removal`.

mod contract;
mod endpoints;
mod resync;
mod routing;
mod tls;
mod under_test;

pub(crate) use under_test::Haproxy;
use under_test::Kind;

/// One `#[tokio::test]` per check for one kind, in a module named after the kind.
macro_rules! kind_suite {
    ($kind_mod:ident, $kind:expr, [$($concern:ident::$check:ident),* $(,)?]) => {
        mod $kind_mod {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if $kind.available() {
                        super::$concern::$check($kind).await;
                    }
                }
            )*
        }
    };
}

/// Every check, for every kind.
macro_rules! suite {
    ($($checks:tt)*) => {
        kind_suite!(proxy, super::Kind::Proxy, [$($checks)*]);
        kind_suite!(haproxy, super::Kind::Haproxy, [$($checks)*]);
        kind_suite!(caddy, super::Kind::Caddy, [$($checks)*]);
    };
}

suite![
    routing::routes_by_host_and_path,
    routing::serves_host_less_rules_for_unknown_hosts,
    routing::gateway_rules_are_served_or_left_out,
    endpoints::scale_out_drain_and_removal,
    endpoints::weights_split_traffic,
    endpoints::removed_endpoint_finishes_in_flight_requests,
    endpoints::drained_then_removed_endpoint_finishes_in_flight_requests,
    endpoints::failing_health_checks_take_an_endpoint_out,
    resync::restart_is_seen_and_resynced,
    resync::one_dead_instance_does_not_stop_the_other,
    resync::full_resync_of_an_lb_in_sync_changes_nothing,
    contract::applies_patches_to_what_it_holds,
    contract::never_touches_what_podgate_did_not_register,
    contract::fences_old_epochs,
    tls::terminates_tls_by_sni_and_rotates_without_reload,
    tls::certificates_survive_a_restart,
];

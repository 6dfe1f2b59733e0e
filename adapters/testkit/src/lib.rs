//! # resumable-stream-testkit
//!
//! The behaviour suite of the resumable-stream drivers, written once. A driver's test
//! implements [`Harness`] (its API seen through one blocking shape) and expands
//! [`behaviour_suite!`], which makes one `#[test]` per case and store: a private
//! redis-server started by the test on a free loopback port, the in-memory backend, and
//! (for async drivers) a custom publisher/subscriber.

pub mod async_harness;
pub mod cluster;
pub mod custom;
pub mod durable;
pub mod harness;
pub mod managed;
pub mod redis_cluster;
pub mod redis_server;
pub mod setup;
pub mod sse;
pub mod store;
pub mod suite;
pub mod tls;
pub mod user_code;
pub mod wire;

pub use async_harness::{AsyncContext, AsyncHarness, Executor};
pub use harness::{fixed, manual, Context, Feed, Harness, Item, Made, Reader, Resumed, Source};
pub use redis_cluster::RedisCluster;
pub use redis_server::{free_port, RedisServer, ServerOptions};
pub use setup::Setup;
pub use store::Store;

/// One `#[test]` per case of the suite and per store (`memory`, `redis`, `custom`,
/// `tls`), each in a module named after its store, plus the Redis-only cases (faults,
/// wire) and the managed-Redis ones (TLS, passwords, the ACL).
///
/// ```ignore
/// resumable_stream_testkit::behaviour_suite!(MyHarness::new(); memory, redis);
/// ```
#[macro_export]
macro_rules! behaviour_suite {
    ($harness:expr; $($store:ident),+ $(,)?) => {
        $( $crate::behaviour_suite!(@store $harness; $store); )+
        mod redis_faults {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn connecting_to_no_redis_is_a_typed_error() {
                $crate::suite::connecting_to_no_redis_is_a_typed_error(&$harness);
            }
            #[test]
            fn sharded_pubsub_without_a_cluster_is_refused_at_build() {
                $crate::suite::sharded_pubsub_without_a_cluster_is_refused_at_build(&$harness);
            }
            #[test]
            fn redis_dying_mid_stream_ends_readers_with_typed_errors() {
                let mut store = $crate::Store::redis();
                $crate::suite::redis_dying_mid_stream_ends_readers_with_typed_errors(&$harness, &mut store);
            }
            #[test]
            fn redis_restarting_mid_stream_loses_no_byte() {
                let mut store = $crate::Store::redis();
                $crate::suite::redis_restarting_mid_stream_loses_no_byte(&$harness, &mut store);
            }
            #[test]
            fn the_commands_on_the_wire_are_the_v1_protocol() {
                $crate::wire::the_commands_on_the_wire_are_the_v1_protocol(&$harness, &$crate::Store::redis());
            }
            #[test]
            fn a_tls_redis_restarting_mid_stream_loses_no_byte() {
                let mut store = $crate::Store::tls();
                $crate::suite::redis_restarting_mid_stream_loses_no_byte(&$harness, &mut store);
            }
        }
        mod managed_redis {
            #[allow(unused_imports)]
            use super::*;
            $crate::behaviour_suite!(@managed $harness;
                a_wrong_ca_is_refused_with_a_typed_error,
                the_system_roots_do_not_trust_a_private_ca,
                a_plain_url_at_a_tls_port_fails_at_once,
                root_certificates_need_a_tls_url,
                a_wrong_password_is_a_typed_error,
                the_documented_acl_is_enough,
                each_rule_of_the_documented_acl_is_needed,
                without_publish_a_resumer_fails_with_a_typed_error,
                without_the_channel_pattern_a_stream_fails_with_a_typed_error,
                without_the_key_pattern_a_stream_fails_with_a_typed_error,
            );
        }
    };
    (@managed $harness:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::managed::$case(&$harness);
            }
        )+
    };
    (@store $harness:expr; $store:ident) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;
            $crate::behaviour_suite!(@all $harness; $store);
            $crate::behaviour_suite!(@durable $harness; $store);
        }
    };
    // Durable mode: a custom publisher/subscriber cannot hold a log.
    (@durable $harness:expr; custom) => {
        $crate::behaviour_suite!(@durable_cases $harness; custom;
            durable_without_a_log_store_is_a_typed_error,
        );
    };
    (@durable $harness:expr; $store:ident) => {
        $crate::behaviour_suite!(@durable_cases $harness; $store;
            durable_readers_elsewhere_are_byte_exact_and_a_finished_stream_replays,
            durable_chunk_positions_in_the_log,
            durable_a_producer_that_dies_leaves_its_log,
            durable_many_streams_share_few_blocking_reads,
        );
    };
    (@durable_cases $harness:expr; $store:ident; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::durable::$case(&$harness, &$crate::Store::$store());
            }
        )+
    };
    (@all $harness:expr; $store:ident) => {
        $crate::behaviour_suite!(@cases $harness; $store;
            acts_like_a_normal_stream,
            resuming_a_done_stream_answers_done,
            reverse_read_order,
            resume_in_progress,
            it_really_streams_producer_first,
            it_really_streams_consumer_first,
            several_resumers,
            two_streams_kept_apart,
            skips_of_0_2_and_4,
            done_once_finished,
            explicit_create_and_resume,
            state_at_each_stage,
            four_resumers_joining_while_chunks_flow_are_byte_exact,
            utf16_skips_across_non_ascii_text,
            a_thousand_concurrent_streams,
            malformed_requests_do_not_disturb_streams,
            a_gone_producer_fails_the_resumer_with_ack_timeout,
            unexpected_sentinels_are_typed_errors,
            a_source_error_reaches_the_local_reader,
            the_producer_finishes_without_its_local_reader,
            dropping_the_context_ends_its_streams,
            cancel_from_another_instance,
            resume_by_chunk_index,
        );
    };
    (@cases $harness:expr; $store:ident; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::suite::$case(&$harness, &$crate::Store::$store());
            }
        )+
        $crate::behaviour_suite!(@user_code $harness; $store;
            a_panicking_source_ends_the_stream_as_a_source_error,
            a_panicking_make_stream_ends_the_stream_as_a_source_error,
            make_stream_may_call_its_context,
            a_slow_make_stream_stalls_no_other_stream,
            the_sentinel_ttl_is_the_configured_one,
            the_done_watchdog_runs_at_the_configured_interval,
            a_graceful_shutdown_loses_no_byte,
            a_shutdown_returns_at_its_deadline,
        );
    };
    (@user_code $harness:expr; $store:ident; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::user_code::$case(&$harness, &$crate::Store::$store());
            }
        )+
    };
}

/// The behaviour suite against a private three-master Redis Cluster: every case with
/// sharded pub/sub (module `cluster`), a few with classic pub/sub
/// (`cluster_classic`), and the cluster's own cases (`cluster_faults`): the commands
/// each node ran, and a node killed and restarted mid-stream.
///
/// ```ignore
/// resumable_stream_testkit::cluster_suite!(MyHarness::new());
/// ```
#[macro_export]
macro_rules! cluster_suite {
    ($harness:expr) => {
        mod cluster {
            #[allow(unused_imports)]
            use super::*;
            $crate::behaviour_suite!(@all $harness; cluster);
            $crate::behaviour_suite!(@durable $harness; cluster);
        }
        mod cluster_classic {
            #[allow(unused_imports)]
            use super::*;
            $crate::behaviour_suite!(@cases $harness; cluster_classic;
                acts_like_a_normal_stream,
                four_resumers_joining_while_chunks_flow_are_byte_exact,
                malformed_requests_do_not_disturb_streams,
                cancel_from_another_instance,
            );
        }
        mod cluster_tls {
            #[allow(unused_imports)]
            use super::*;
            $crate::behaviour_suite!(@cases $harness; cluster_tls;
                acts_like_a_normal_stream,
                four_resumers_joining_while_chunks_flow_are_byte_exact,
                cancel_from_another_instance,
            );
        }
        mod cluster_faults {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn the_documented_cluster_acl_is_enough() {
                $crate::managed::the_documented_cluster_acl_is_enough(&$harness);
            }
            #[test]
            fn sharded_pubsub_is_spublish_and_ssubscribe_on_the_owning_shard() {
                let mut store = $crate::Store::cluster();
                $crate::cluster::the_pubsub_commands_are_the_configured_ones(&$harness, &mut store);
            }
            #[test]
            fn classic_pubsub_is_publish_and_subscribe() {
                let mut store = $crate::Store::cluster_classic();
                $crate::cluster::the_pubsub_commands_are_the_configured_ones(&$harness, &mut store);
            }
            #[test]
            fn a_failover_mid_stream_loses_no_byte() {
                let mut store = $crate::Store::cluster_replicated();
                $crate::cluster::a_failover_mid_stream_loses_no_byte(&$harness, &mut store);
            }
            #[test]
            fn a_master_killed_mid_stream_fails_over() {
                let mut store = $crate::Store::cluster_replicated();
                $crate::cluster::a_master_killed_mid_stream_fails_over(&$harness, &mut store);
            }
            #[test]
            fn a_failover_longer_than_the_window_ends_readers_with_typed_errors() {
                let mut store = $crate::Store::cluster_replicated();
                $crate::cluster::a_failover_longer_than_the_window_ends_readers_with_typed_errors(&$harness, &mut store);
            }
            #[test]
            fn a_slot_moving_mid_stream_loses_no_byte() {
                let mut store = $crate::Store::cluster();
                $crate::cluster::a_slot_moving_mid_stream_loses_no_byte(&$harness, &mut store);
            }
            #[test]
            fn a_node_restarting_mid_stream_loses_no_byte() {
                let mut store = $crate::Store::cluster();
                $crate::cluster::a_node_restarting_mid_stream_loses_no_byte(&$harness, &mut store);
            }
        }
    };
}

//! Integration tests of cutover-dns: against the embedded server in-process, and (ignored
//! unless asked for) against real BIND 9 and Knot DNS.

mod bad_input; // unreachable servers, wrong keys and zones, broken zone files
mod bind; // interop with named as primary and secondary (needs bind9)
mod embedded; // updates, verification and restarts against `serve`
mod knot; // the scenarios against Knot DNS (needs knot)
mod primary; // NOTIFY, IXFR, big AXFR and TSIG answers of `serve` on the wire
mod scenarios; // the DNS scenarios, once, against any server under test
mod support; // starting servers on loopback, test keys

//! The quickstart path: a dry-run agent and the controller talking to it.

use lightsout_tests::{AgentProcess, Lab};

#[test]
fn echo_against_a_dry_run_agent() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let run = lab
        .lightsout(&["--json", "echo", &agent.target(), "--payload", "hello"])
        .success();
    let doc = run.json();
    let host = &doc["results"][0];
    assert_eq!(host["ok"], true);
    assert_eq!(host["response"]["payload"], "hello");
    assert_eq!(host["response"]["health"]["dry_run"], true);
}

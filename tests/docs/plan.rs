//! Which of the README's procedures this suite runs, and where; and the checks that nothing
//! the README tells a person to type is left untested: every `sh` block of the quickstart
//! and of the rollout is a marked procedure, every marked procedure is run by a test, none is
//! empty or named twice.

use lightsout_tests::ShBlock;

/// Where a procedure runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// This checkout of the repository (a developer's machine).
    Checkout,
    /// The administrator's laptop.
    Laptop,
    /// Every lab machine in turn, `lab-01` in the text replaced by its name.
    EachLabMachine,
}

/// One step of the plan.
#[derive(Debug)]
pub struct Step {
    /// The procedure's name (`<!-- procedure: NAME -->`).
    pub procedure: &'static str,
    /// Where.
    pub on: On,
}

/// The quickstart.
pub const QUICKSTART: &[Step] = &[Step {
    procedure: "quickstart",
    on: On::Checkout,
}];

/// The rollout and the revocation after it, in order.
pub const ROLLOUT: &[Step] = &[
    Step {
        procedure: "rollout-laptop",
        on: On::Laptop,
    },
    Step {
        procedure: "rollout-lab-machine",
        on: On::EachLabMachine,
    },
    Step {
        procedure: "rollout-check",
        on: On::Laptop,
    },
    Step {
        procedure: "revoke",
        on: On::Laptop,
    },
    Step {
        procedure: "install-crl",
        on: On::EachLabMachine,
    },
];

/// The key procedures, run by `tests/e2e/keys.rs` on its own stand-in machines.
pub const RUN_BY_KEYS_TESTS: &[&str] = &[
    "second-controller-issue",
    "second-controller-install",
    "renew-agent",
    "install-agent",
    "revoke-agent",
    "install-crl",
    "renew-controller",
    "install-controller",
    "revoke-controller",
    "backup",
    "restore",
];

/// The sections in which every `sh` block must be a procedure (by the start of the heading).
pub const SECTIONS: &[&str] = &["Quickstart", "Rolling out to a lab"];

/// What is wrong with the README's procedures, given its `sh` blocks and the text of the
/// keys tests; empty when nothing is.
pub fn problems(blocks: &[ShBlock], keys_tests: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for block in blocks {
        let in_checked_section = SECTIONS.iter().any(|s| block.section.starts_with(s));
        match &block.procedure {
            None if in_checked_section => problems.push(format!(
                "README.md line {}: a ```sh block in \"{}\" without a <!-- procedure: NAME --> \
                 line before it: mark it, and run it in tests/docs (plan.rs)",
                block.line, block.section
            )),
            None => {}
            Some(name) => {
                let planned = QUICKSTART
                    .iter()
                    .chain(ROLLOUT)
                    .any(|s| s.procedure == name);
                if !planned && !RUN_BY_KEYS_TESTS.contains(&name.as_str()) {
                    problems.push(format!(
                        "README.md line {}: procedure {name} is run by no test: add it to \
                         tests/docs/plan.rs",
                        block.line
                    ));
                }
                let has_command = block.body.lines().any(|l| {
                    let l = l.trim();
                    !l.is_empty() && !l.starts_with('#')
                });
                if !has_command {
                    problems.push(format!(
                        "README.md line {}: procedure {name} is empty",
                        block.line
                    ));
                }
                if blocks
                    .iter()
                    .filter(|b| b.procedure.as_ref() == Some(name))
                    .count()
                    > 1
                    && blocks
                        .iter()
                        .find(|b| b.procedure.as_ref() == Some(name))
                        .is_some_and(|first| first.line == block.line)
                {
                    problems.push(format!("README.md: procedure {name} is named twice"));
                }
            }
        }
    }
    for step in QUICKSTART.iter().chain(ROLLOUT) {
        if !blocks
            .iter()
            .any(|b| b.procedure.as_deref() == Some(step.procedure))
        {
            problems.push(format!(
                "README.md has no <!-- procedure: {} --> followed by a ```sh block",
                step.procedure
            ));
        }
    }
    for name in RUN_BY_KEYS_TESTS {
        if !keys_tests.contains(&format!("procedure(\"{name}\"")) {
            problems.push(format!(
                "procedure {name} is listed as run by tests/e2e/keys.rs, which does not run it"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightsout_tests::sh_blocks;

    fn keys_tests() -> String {
        RUN_BY_KEYS_TESTS
            .iter()
            .map(|n| format!("procedure(\"{n}\", ..)\n"))
            .collect()
    }

    fn readme(rollout_extra: &str) -> String {
        let mut text = String::from(
            "# x\n## Quickstart (two commands)\n\n<!-- procedure: quickstart -->\n```sh\n./quickstart\n```\n## Rolling out to a lab (Linux)\n",
        );
        for step in ROLLOUT {
            text.push_str(&format!(
                "<!-- procedure: {} -->\n\n```sh\necho {}\n```\n",
                step.procedure, step.procedure
            ));
        }
        text.push_str(rollout_extra);
        text.push_str("## Security model\n```sh\nunmarked elsewhere is fine\n```\n");
        for name in RUN_BY_KEYS_TESTS.iter().filter(|n| **n != "install-crl") {
            text.push_str(&format!("<!-- procedure: {name} -->\n```sh\ntrue\n```\n"));
        }
        text
    }

    #[test]
    fn a_complete_readme_has_no_problem() {
        let problems = problems(&sh_blocks(&readme("")), &keys_tests());
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn an_unmarked_block_in_the_rollout_is_a_problem() {
        let problems = problems(
            &sh_blocks(&readme("Then:\n\n```sh\nsudo reboot\n```\n")),
            &keys_tests(),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("without a <!-- procedure"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_empty_unplanned_or_doubled_procedure_is_a_problem() {
        let text = readme("<!-- procedure: surprise -->\n```sh\ntrue\n```\n")
            .replace("<!-- procedure: revoke -->", "<!-- nothing -->")
            .replace("echo rollout-check\n", "# only a comment\n")
            .replace("<!-- procedure: backup -->", "<!-- procedure: restore -->");
        let problems = problems(&sh_blocks(&text), &keys_tests());
        let all = problems.join("\n");
        for expected in [
            "procedure surprise is run by no test",
            "procedure rollout-check is empty",
            "has no <!-- procedure: revoke -->",
            "without a <!-- procedure",
            "procedure restore is named twice",
        ] {
            assert!(all.contains(expected), "{expected}: {all}");
        }
    }

    #[test]
    fn a_key_procedure_the_keys_tests_do_not_run_is_a_problem() {
        let problems = problems(
            &sh_blocks(&readme("")),
            &keys_tests().replace("procedure(\"backup\"", "nothing"),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("backup"), "{problems:?}");
    }
}

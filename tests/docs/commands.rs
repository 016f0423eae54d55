//! A procedure's block cut into the shell commands a person would paste one at a time: a
//! line, or several when a command goes on (a loop, a here-document, a line ending in `\`).
//! The shell itself (`sh -n`) says whether a command is complete; here-documents and
//! continued lines are followed here, since `sh -n` accepts them unfinished.

use std::process::Command;

/// The commands of `body`, in order; blank lines and whole-line comments are left out.
///
/// # Errors
/// The block ends in the middle of a command (an unclosed loop, quote or here-document).
pub fn split(body: &str) -> Result<Vec<String>, String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    let mut heredoc: Option<(String, bool)> = None;
    for line in body.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if let Some((end, tabs)) = &heredoc {
            let candidate = if *tabs {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if candidate == end {
                heredoc = None;
            } else {
                continue;
            }
        } else if let Some(opened) = heredoc_delimiter(line) {
            heredoc = Some(opened);
            continue;
        }
        if line.ends_with('\\') {
            continue;
        }
        if shell_accepts(&current) {
            commands.push(std::mem::take(&mut current));
        }
    }
    if current.is_empty() {
        Ok(commands)
    } else {
        Err(format!(
            "the block ends in the middle of a command:\n{current}"
        ))
    }
}

/// The delimiter of a here-document opened on `line` (`<<EOF`, `<<'EOF'`, `<<-"EOF"`), and
/// whether leading tabs are stripped (`<<-`).
fn heredoc_delimiter(line: &str) -> Option<(String, bool)> {
    let code = strip_comment(line);
    let at = code.find("<<")?;
    let rest = &code[at + 2..];
    let (rest, tabs) = match rest.strip_prefix('-') {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    let word: String = rest
        .trim_start()
        .chars()
        .filter(|c| *c != '\'' && *c != '"')
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some((word, tabs))
}

fn shell_accepts(script: &str) -> bool {
    Command::new("sh")
        .args(["-n", "-c", script])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `line` without its trailing comment (a `#` at the start of a word, outside quotes),
/// trimmed.
pub fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return line[..i].trim(),
            None => {}
        }
        previous = c;
    }
    line.trim()
}

/// A command's words for matching against the substitution table: its only line without the
/// comment, spaces collapsed. `None` for a command of several lines (no rule matches those:
/// they run as written).
pub fn one_line(command: &str) -> Option<String> {
    let mut lines = command.lines();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    Some(
        strip_comment(first)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_heredocs_and_continued_lines_are_one_command_each() {
        let body = "\
# a comment line
lightsout pki init                 # the CA
for i in 1 2 3; do                 # one per machine
  echo lab-0$i
done

cat > inv.toml <<'EOF'
[hosts.lab-01]
address = \"10.0.0.21\"   # kept: inside the here-document
EOF
echo a \\
  b
echo '# not a comment' # a comment
";
        let commands = split(body).unwrap();
        assert_eq!(
            commands,
            [
                "lightsout pki init                 # the CA\n",
                "for i in 1 2 3; do                 # one per machine\n  echo lab-0$i\ndone\n",
                "cat > inv.toml <<'EOF'\n[hosts.lab-01]\naddress = \"10.0.0.21\"   # kept: inside the here-document\nEOF\n",
                "echo a \\\n  b\n",
                "echo '# not a comment' # a comment\n",
            ]
        );
        assert_eq!(one_line(&commands[0]).unwrap(), "lightsout pki init");
        assert_eq!(one_line(&commands[1]), None);
        assert_eq!(one_line(&commands[4]).unwrap(), "echo '# not a comment'");
    }

    #[test]
    fn a_block_that_ends_inside_a_command_is_an_error() {
        for body in [
            "for i in 1 2; do\n  echo $i\n",
            "cat > x <<EOF\nnever closed\n",
            "echo 'unclosed\n",
            "echo a \\\n",
        ] {
            let err = split(body).unwrap_err();
            assert!(
                err.contains("ends in the middle of a command"),
                "{body}: {err}"
            );
        }
    }
}

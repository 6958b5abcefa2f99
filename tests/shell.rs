//! `rekey completions` and `rekey man`: generated from the command definition; bash's
//! completion script is loaded into a real bash and completes subcommands and flags.

use std::process::Command;

fn rekey(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bash_completes_commands_and_flags_from_the_generated_script() {
    let script = rekey(&["completions", "bash"]);
    assert!(script.status.success());
    let path = std::env::temp_dir().join(format!("rekey-completion-{}.bash", std::process::id()));
    std::fs::write(&path, &script.stdout).unwrap();
    let complete = |words: &str, cword: usize| {
        let out = Command::new("bash")
            .arg("--norc")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _rekey rekey; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path.display()
            ))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let commands = complete("rekey ''", 1);
    for c in ["plan", "apply", "status", "exec", "completions"] {
        assert!(
            commands.lines().any(|l| l == c),
            "{c} not offered: {commands}"
        );
    }
    let flags = complete("rekey plan --det", 2);
    assert!(flags.lines().any(|l| l == "--detailed-exitcode"), "{flags}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn zsh_fish_completions_and_the_man_page_are_generated() {
    let zsh = rekey(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef rekey"));
    let fish = rekey(&["completions", "fish"]);
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c rekey"));
    let man = rekey(&["man"]);
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success());
    assert!(
        text.contains(".TH rekey 1") && text.contains("apply"),
        "{text}"
    );
    // A reader that goes away early is not an error (`rekey man | head`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

//! Spawn progress: what the pods of a spawn are waiting for, shown while they start.
//!
//! On a terminal, one line per group (or single actor) is redrawn in place with
//! indicatif: `trainer: 3/8 pods ready, 5 pulling image`. Otherwise (CI logs, files) a
//! plain line is written on each change, so logs stay readable.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Where spawn progress goes.
pub(crate) struct Progress {
    terminal: Option<MultiProgress>,
    quiet: bool,
    boards: Mutex<HashMap<String, Arc<Board>>>,
}

/// The members of one group (or one single actor) and the stage each is at.
pub(crate) struct Board {
    title: String,
    size: usize,
    quiet: bool,
    stages: Mutex<BTreeMap<usize, &'static str>>,
    bar: Option<ProgressBar>,
    last_line: Mutex<String>,
}

impl Progress {
    /// Progress on stderr: redrawn on a terminal, plain lines otherwise, nothing when
    /// `quiet`.
    pub(crate) fn new(quiet: bool) -> Self {
        let terminal = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Progress {
            terminal,
            quiet,
            boards: Mutex::new(HashMap::new()),
        }
    }

    /// The board of `title` (a group or an actor) with `size` members.
    pub(crate) fn board(&self, title: &str, size: usize) -> Arc<Board> {
        let mut boards = self.boards.lock().unwrap_or_else(|e| e.into_inner());
        boards
            .entry(title.to_string())
            .or_insert_with(|| {
                let bar = self.terminal.as_ref().map(|multi| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    bar
                });
                Arc::new(Board {
                    title: title.to_string(),
                    size,
                    quiet: self.quiet,
                    stages: Mutex::new(BTreeMap::new()),
                    bar,
                    last_line: Mutex::new(String::new()),
                })
            })
            .clone()
    }

    /// Forgets a board whose spawn is over.
    pub(crate) fn done(&self, title: &str) {
        let mut boards = self.boards.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(board) = boards.remove(title)
            && let Some(bar) = &board.bar
        {
            bar.finish_and_clear();
        }
    }
}

impl Board {
    /// True once every member is ready.
    pub(crate) fn all_ready(&self) -> bool {
        let stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages.len() == self.size && stages.values().all(|s| *s == "ready")
    }

    /// Member `rank` is at `stage` (`ready`, `pulling image`, ...).
    pub(crate) fn set(&self, rank: usize, stage: &'static str) {
        let line = {
            let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
            stages.insert(rank, stage);
            summary(&self.title, self.size, &stages)
        };
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if *last == line {
            return;
        }
        *last = line.clone();
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None if !self.quiet => eprintln!("kt: {line}"),
            None => {}
        }
    }
}

/// `trainer: 3/8 pods ready, 5 pulling image`.
fn summary(title: &str, size: usize, stages: &BTreeMap<usize, &'static str>) -> String {
    let ready = stages.values().filter(|s| **s == "ready").count();
    let mut others: BTreeMap<&str, usize> = BTreeMap::new();
    for stage in stages.values().filter(|s| **s != "ready") {
        *others.entry(stage).or_default() += 1;
    }
    let unit = if size == 1 { "pod" } else { "pods" };
    let mut line = format!("{title}: {ready}/{size} {unit} ready");
    for (stage, count) in others {
        line.push_str(&format!(", {count} {stage}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_count_members_by_stage() {
        let stages = BTreeMap::from([
            (0, "ready"),
            (1, "ready"),
            (2, "ready"),
            (3, "pulling image"),
            (4, "pulling image"),
            (5, "scheduling"),
        ]);
        assert_eq!(
            summary("trainer", 8, &stages),
            "trainer: 3/8 pods ready, 2 pulling image, 1 scheduling"
        );
        assert_eq!(
            summary("reward", 1, &BTreeMap::from([(0, "creating")])),
            "reward: 0/1 pod ready, 1 creating"
        );
    }
}

//! The reduced detection table CI runs: the same code as the benchmark (`cargo bench -p tensorgrid-sim
//! --bench detection`, `tgrid sim --detection`), tens of jobs per row instead of a thousand.

use tensorgrid_sim::detection::{render, table, Strategy};

#[test]
fn every_cheat_settles_conserves_supply_and_pays_less_than_honest_work() {
    let rows = table(30, 1).unwrap();
    println!("{}", render(&rows));
    assert_eq!(rows.len(), Strategy::ALL.len() * 3);
    for r in &rows {
        let what = format!("{:?} at {} %", r.strategy, r.price_percent);
        assert_eq!(r.unresolved, 0, "{what}: every job settled");
        assert!(r.supply_conserved, "{what}");
        // Cheating never earns more than doing the work honestly in the same place, even if the work were
        // free.
        assert!(r.profit_per_job <= r.honest_profit_per_job, "{what}: {r:?}");
        match r.strategy {
            // Caught every time by construction: each of its disputes is refereed, and the lying or silent
            // member forfeits whenever it sits.
            Strategy::GriefingClient | Strategy::LyingReferee | Strategy::SilentReferee => {
                assert!(r.caught > 0 && r.profit_per_job < r.honest_profit_per_job, "{what}: {r:?}");
            }
            _ => {}
        }
        // The honest network checks about the audit rate of its work, and a committee only when asked.
        assert!(
            r.honest_overhead < 0.2 || matches!(r.strategy, Strategy::LyingReferee | Strategy::SilentReferee)
        );
    }
    // Audits catch an always-wrong provider on its own, with nobody disputing.
    let always: usize = rows.iter().filter(|r| r.strategy == Strategy::AlwaysWrong).map(|r| r.caught).sum();
    assert!(always > 0, "an always-wrong provider was never audited in 90 jobs");
}

#[test]
fn the_same_seed_gives_the_same_row() {
    let a = tensorgrid_sim::detection::row(Strategy::TwoColluders, 10, 12, 7).unwrap();
    let b = tensorgrid_sim::detection::row(Strategy::TwoColluders, 10, 12, 7).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

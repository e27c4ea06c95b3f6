"""A deliberately naive second implementation of the report metrics, to check engine/analytics
against: plain loops over the trades in time order, nothing merged."""

from __future__ import annotations

from decimal import Decimal

from engine.analytics import TradeResult


def reference(trades: list[TradeResult]) -> dict[str, object]:
    """Every metric of a summary, computed the long way (trades already in time order)."""
    pnls = [t.pnl for t in trades]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    equity, peak, worst = Decimal(0), Decimal(0), Decimal(0)
    for p in pnls:
        equity += p
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    signs = [1 if p > 0 else -1 for p in pnls if p != 0]
    longest = {1: 0, -1: 0}
    run_sign, run = 0, 0
    for s in signs:
        run = run + 1 if s == run_sign else 1
        run_sign = s
        longest[s] = max(longest[s], run)
    decided = len(wins) + len(losses)
    return {
        "trades": len(trades),
        "wins": len(wins),
        "losses": len(losses),
        "breakevens": len(trades) - decided,
        "pnl": sum(pnls, Decimal(0)),
        "win_rate": Decimal(len(wins)) / decided if decided else None,
        "avg_win": sum(wins, Decimal(0)) / len(wins) if wins else None,
        "avg_loss": sum(losses, Decimal(0)) / len(losses) if losses else None,
        "avg_r": sum((t.r for t in trades), Decimal(0)) / len(trades) if trades else None,
        "profit_factor": sum(wins, Decimal(0)) / -sum(losses, Decimal(0)) if losses else None,
        "expectancy": sum(pnls, Decimal(0)) / len(trades) if trades else None,
        "max_drawdown": worst,
        "current_streak": run_sign * run,
        "longest_win": longest[1],
        "longest_loss": longest[-1],
    }


def of_stats(stats: object) -> dict[str, object]:
    """The same metrics read off an engine Stats."""
    return {
        "trades": stats.trades,
        "wins": stats.wins,
        "losses": stats.losses,
        "breakevens": stats.breakevens,
        "pnl": stats.pnl,
        "win_rate": stats.win_rate,
        "avg_win": stats.avg_win,
        "avg_loss": stats.avg_loss,
        "avg_r": stats.avg_r,
        "profit_factor": stats.profit_factor,
        "expectancy": stats.expectancy,
        "max_drawdown": stats.max_drawdown,
        "current_streak": stats.current_streak,
        "longest_win": stats.longest_win,
        "longest_loss": stats.longest_loss,
    }

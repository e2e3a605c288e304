"""Studies share the platform's database with the Store: neither one's tables or migrations disturb the other."""

from __future__ import annotations

import pytest

from tuneforge.settings import Settings

pytest.importorskip("optuna")


def _drop_study_schema(url: str) -> None:
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        from tuneforge.storage.engine import normalize_url

        engine = create_engine(normalize_url(url))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS optuna CASCADE"))
        engine.dispose()


@pytest.mark.parametrize("store_first", [True, False])
def test_a_study_and_the_store_live_side_by_side(database_url, tmp_path, store_first):
    import optuna

    from tuneforge.hpo.study import open_storage, studies_url
    from tuneforge.storage.sql import SqlStore

    _drop_study_schema(database_url)
    settings = Settings(home=str(tmp_path), database_url=database_url)

    def store_round_trip() -> None:
        store = SqlStore(database_url)  # migrates to head; fails if Optuna's Alembic version were in its way
        store.close()

    if store_first:
        store_round_trip()
    study = optuna.create_study(study_name="side", storage=open_storage(settings), direction="minimize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=2)
    store_round_trip()
    again = optuna.load_study(study_name="side", storage=open_storage(settings))
    assert len(again.trials) == 2 and again.best_value == study.best_value
    assert studies_url(settings) != database_url or database_url.startswith("postgresql")

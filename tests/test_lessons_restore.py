"""Lessons survive a restore: those taught after the restored checkpoint stay, marked as not in the
weights (due again, their later recall no longer counted), and come back with an undo. Real tiny
weights, real checkpoints, real SQLite."""

from __future__ import annotations

import torch

from companion.history.restore import describe_plan, plan_restore, restore
from companion.day.scripted import Exchange
from companion.store import Store
from companion.history.weights import Weights
from tests.test_history import live_day


def teach_nights(home, store):
    """Two days, each teaching one fact by a written reply, each followed by an accepted night whose
    recall test says the fact back (20/20) and schedules it 3 nights later."""
    weights = Weights(home, store)
    checkpoints = [weights.current()]
    lessons = []
    for n, (question, answer) in enumerate([("What is my name?", "Your name is Trey."),
                                            ("What is my dog called?", "Your dog is called Biscuit.")]):
        loaded = weights.load_current()
        day = live_day(home, store, [Exchange(question, ("Hm.",), write=answer)], checkpoint_id=checkpoints[-1].id)
        [lesson] = [x for x in store.lessons() if x.day_id == day.id]
        lessons.append(lesson)
        night = store.start_night(day.id, pre_checkpoint_id=checkpoints[-1].id)
        store.record_recalls(night.id, [{"lesson_id": x.id, "hits": 20, "samples": 20} for x in lessons])
        store.schedule_lessons({x.id: (3, day.number + 3) for x in lessons}, night_id=night.id)
        with torch.no_grad():
            for p in loaded.model.parameters():
                p.add_(0.01 * (n + 1))
        saved = weights.save(loaded.model, "night", step=10 * (n + 1), day_id=day.id, day_number=day.number,
                             parent_id=checkpoints[-1].id)
        store.finish_night(night.id, "accepted", post_checkpoint_id=saved.id)
        checkpoints.append(saved)
    return checkpoints, lessons


def test_lessons_after_the_restore_target_are_marked_not_in_the_weights_and_back_on_undo(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        (birth, night1, night2), (name, dog) = teach_nights(tiny_home, store)
        assert [x.status for x in store.lessons()] == ["learned", "learned"]
        assert store.due_lessons(3) == []  # both scheduled for later

        plan = plan_restore(tiny_home, store, night1.id)
        assert plan.lessons_leaving == (dog.id,)
        assert "1 lesson taught on those days will be marked as not in the weights" in describe_plan(plan)
        result = restore(tiny_home, store, night1.id)
        assert result.lessons_marked == 1

        by_id = {x.id: x for x in store.lessons()}
        assert by_id[name.id].in_weights and not by_id[dog.id].in_weights
        assert by_id[dog.id].status == "new"  # night 2's recall was of weights no longer lived on
        assert by_id[name.id].status == "learned"  # night 1 still counts
        assert by_id[dog.id].question == "What is my dog called?"  # the lesson itself is kept
        assert [x.id for x in store.due_lessons(3)] == [dog.id]  # taught again, whatever its schedule

        undo = restore(tiny_home, store, result.saved.id)
        assert undo.lessons_returned == 1
        assert all(x.in_weights for x in store.lessons())
        assert [x.status for x in store.lessons()] == ["learned", "learned"]
        assert store.due_lessons(3) == []

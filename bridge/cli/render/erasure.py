"""``erase``: what an erasure deleted, and the erasure act, a document in Russian
(152-ФЗ ст. 21)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.i18n import _, ngettext

if TYPE_CHECKING:
    from bridge.service.admin import Erasure


def erase_text(done: Erasure) -> str:
    """``erase``: what was deleted, and the act kept."""
    counts = ", ".join(f"{e} {n}" for e, n in done.deleted.items()) or _("nothing")
    lines = [
        _("Pupil {pupil} erased from the portal: {counts}.").format(
            pupil=done.pupil, counts=counts
        ),
        _(
            "The erasure is recorded (time, user, ground, counts); the pupil is never "
            "exported again."
        ),
        _("Print the act: asiou-bridge erase act {pupil}").format(pupil=done.pupil),
    ]
    if done.refused:
        refused = sum(done.refused.values())
        lines.append(
            ngettext(
                "INCOMPLETE: the portal refused {n} delete; run the command again.",
                "INCOMPLETE: the portal refused {n} deletes; run the command again.",
                refused,
            ).format(n=refused)
        )
    return "\n".join(lines)


ENTITY_WORDS = {
    "pupil": "обучающийся",
    "enrollment": "зачисления в классы",
    "group_member": "членство в группах",
    "guardian_link": "связи с законными представителями",
    "guardian": "законные представители",
    "mark": "отметки",
    "absence": "пропуски",
    "period_mark": "итоговые отметки",
}
"""The entities an erasure deletes, as the act names them."""


def erasure_act_text(act: Mapping[str, Any], entities: Iterable[str]) -> str:
    """The erasure act as a document in Russian: who, when, on what ground, what was deleted
    per entity and what the portal acknowledged. Ids only: no names, no birth dates.

    Russian whatever the language of the CLI: the act is a school's record under 152-ФЗ, kept
    with its other documents (so its text is not in the catalog)."""
    planned, acked = act["planned"], act["acknowledged"]
    refused, earlier = act["refused"], act["earlier"]
    done = act["completed_at"]
    lines = [
        "АКТ",
        "об уничтожении персональных данных обучающегося на портале "
        "электронного дневника (152-ФЗ, ст. 21)",
        "",
        f"Обучающийся: идентификатор {act['pupil_key']} (ключ записи в АСИОУ)",
        f"Основание: {act['ground'] or 'не указано (акт прежней версии)'}",
        f"Удаление начато: {_moment(act['erased_at'])}",
        f"Удаление завершено: {_moment(done) if done else 'НЕ ЗАВЕРШЕНО'}",
        f"Выполнил: {act['erased_by']} (пользователь ОС)",
        f"Запуск: {act['run_id'] or '-'}",
        "",
        f"{'данные':<36}{'удалить':>9}{'подтвердил портал':>19}{'отказ':>7}{'удалено ранее':>15}",
    ]
    names = [e for e in entities if e in set(planned) | set(earlier) | set(refused)]
    for entity in names:
        word = f"{ENTITY_WORDS.get(entity, entity)} ({entity})"
        lines.append(
            f"{word:<36}{planned.get(entity, 0):>9}{acked.get(entity, 0):>19}"
            f"{refused.get(entity, 0):>7}{earlier.get(entity, 0):>15}"
        )
    lines += [
        "",
        f"Итого удалений подтверждено порталом: {sum(acked.values())} из {sum(planned.values())}.",
        "Удалённая запись не хранится на портале: остаются только её ключ и время удаления.",
        "«Удалено ранее» — записи, снятые с портала до акта (например, при отзыве согласия).",
        "Обучающийся больше никогда не выгружается на портал.",
        "Акт хранится в школе; персональные данные (ФИО, дата рождения, контакты, "
        "отметки) в нём не приводятся.",
    ]
    if not done:
        lines += [
            "",
            "ВНИМАНИЕ: портал отказал в части удалений; повторите "
            f"`asiou-bridge erase pupil {act['pupil_key']}`.",
        ]
    return "\n".join(lines)


def _moment(value: object) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return f"{value:%d.%m.%Y %H:%M}" + (" UTC" if value.tzinfo is not None else "")
    return "-"

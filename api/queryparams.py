"""Query parameters a route does not take are refused, not ignored (a dependency).

FastAPI reads the parameters a route declares and drops the rest, and of a parameter given
twice it keeps the last: ``GET /incidents?stauts=open`` answered every incident, and
``?status=open&status=closed`` the closed ones only, both with a 200 that looked like an
answer to the question asked. This dependency answers 422 for a name the route does not
declare, and for a parameter that takes one value given more than once.

Applied to the API's routers (``api.app``), not to the links people click in chat apps
(ack links: an app may add its own tracking parameters) nor to the console's files.
"""

from __future__ import annotations

import types
import typing
from collections import Counter
from typing import Any

from fastapi import HTTPException, Request, status

_MANY = (list, tuple, set, frozenset)


def _takes_many(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in _MANY or annotation in _MANY:
        return True
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_takes_many(arg) for arg in typing.get_args(annotation))
    return False


def _names(dependant: Any) -> dict[str, bool]:
    """The query parameters of a route's dependant and of its dependencies, each with
    whether it takes many values."""
    names = {f.alias: _takes_many(f.field_info.annotation) for f in dependant.query_params}
    for sub in dependant.dependencies:
        names.update(_names(sub))
    return names


async def refuse_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    declared = _names(dependant)  # a few fields: cheaper than a cache keyed by route
    given = Counter(name for name, _ in request.query_params.multi_items())
    for name, times in given.items():
        if name not in declared:
            takes = ", ".join(sorted(declared)) or "none"
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"unknown query parameter {name[:64]!r}; this route takes: {takes}",
            )
        if times > 1 and not declared[name]:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"query parameter {name!r} given {times} times; it takes one value",
            )

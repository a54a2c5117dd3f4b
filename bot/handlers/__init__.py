"""One module per event family, each with its own router; the app composes them."""

from ..router import Router
from . import issue_comment, pull_request

router = Router(pull_request.router, issue_comment.router)

"""The eip test kit.

- the ``eip_context`` pytest fixture (a fresh :class:`~eip.Context` on a :class:`ManualClock`,
  stopped after the test) from the ``eip`` pytest plugin, installed with the package;
- :class:`MockEndpoint` expectations: ``context.mock("name").expect_count(2)``, then
  ``await mock.assert_satisfied(timeout=1)``;
- :class:`ProducerTemplate`: ``await context.template().request("direct:in", body)``;
- :func:`advice`: replace a route's ``from``, mock or intercept sends by URI pattern;
- :class:`ManualClock`: timers, redelivery backoff and timeouts move only when the test says.
"""

from eip.clock import ManualClock
from eip.components.mock import MockEndpoint
from eip.runtime.template import ProducerTemplate
from eip.testing.advice import Advice, advice

__all__ = ["Advice", "ManualClock", "MockEndpoint", "ProducerTemplate", "advice"]

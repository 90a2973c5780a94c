"""Hand the -H host list to our tasks instead of one call per host.

Fabric runs a task once per -H host and stops at the first exception, so a
task cannot say which hosts were done, which failed and which never started,
nor run them concurrently. Our tasks take the whole list and do that
themselves (rolling by default, --parallel when asked).
"""

import fabric


class Executor(fabric.Executor):
    def expand_calls(self, calls, apply_hosts=True):
        if apply_hosts:  # pre/post tasks recurse here with apply_hosts=False
            hosts = self.core[0].args.hosts.value
            self.config["bluegreen_hosts"] = hosts.split(",") if hosts else []
        return super().expand_calls(calls, apply_hosts=False)

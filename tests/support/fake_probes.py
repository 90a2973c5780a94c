"""A fake clock, answers and a reporter for the health gate and the check
through nginx."""

from http.client import responses

from tasks.connection.http_channel import Response, describe_request


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def response(status, headers, path="/", host_header="_"):
    """What probe.get returns for an answer."""
    return Response(status, responses.get(status, ""), headers, b"",
                    describe_request(path, host_header))


class Reporter:
    def __init__(self):
        self.lines = []

    def progress(self, text):
        self.lines.append(text)

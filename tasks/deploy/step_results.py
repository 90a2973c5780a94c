"""What the operator sees of a step's output: its progress lines, the line
that says what went wrong, and the Failure a failed step becomes."""

from ..errors import FAILED, Failure


def step_failed(result, phase, hint):
    why = result.values.get("error") or f"the {phase} step failed (exit {result.code})"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return Failure(f"{why}; nothing live changed", hint + (
        "" if not lines else f"; last output: {lines[-1].strip()[:200]}"), code=FAILED)


def show_progress(reporter):
    """Build and git lines worth showing without --verbose: steps and errors."""

    def on_line(stream, line):
        if reporter.verbose or is_progress(line):
            reporter.progress(line.strip())

    return on_line


def is_progress(line):
    text = line.strip()
    return (text.startswith("#") and " [" in text and "internal]" not in text) or \
        text.startswith(("ERROR", "error", "Step ", "failed to")) or " Built" in text


def last_line(text):
    """The line of a tool's output that says what went wrong."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if "[emerg]" in line or "[alert]" in line or "[crit]" in line:
            return line
    return lines[-1] if lines else "(no output)"

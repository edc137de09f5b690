#!/usr/bin/env python3
"""Reports Markdown links whose file or #anchor does not exist.

Checks every *.md file under the repository (outside target/ and .git/): relative links
[text](path), [text](path#anchor) and [text](#anchor). Anchors are GitHub's: the heading text
lower-cased, everything but letters, digits, spaces, '-' and '_' dropped, spaces turned into '-',
and '-1', '-2' ... appended to repeats. External links (http:, https:, mailto:) are not checked.
Exit status 1 when a link is broken.
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
SKIP_DIRS = {".git", "target", "node_modules"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def anchors(path):
    seen = {}
    result = set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            m = None if in_code else HEADING.match(line)
            if not m:
                continue
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(2))
            slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            result.add(slug if n == 0 else f"{slug}-{n}")
    return result


def links(path):
    in_code = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            if in_code:
                continue
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                yield number, target


def main():
    cache = {}
    broken = 0
    for directory, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(".md"):
                continue
            source = os.path.join(directory, name)
            for number, target in links(source):
                if re.match(r"^[a-z]+:", target):
                    continue
                file_part, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(directory, file_part)) if file_part else source
                where = f"{os.path.relpath(source, ROOT)}:{number}: {target}"
                if not os.path.exists(dest):
                    print(f"{where}: no such file")
                    broken += 1
                elif anchor and dest.endswith(".md"):
                    if dest not in cache:
                        cache[dest] = anchors(dest)
                    if anchor not in cache[dest]:
                        print(f"{where}: no heading with this anchor")
                        broken += 1
    print(f"{broken} broken link(s)", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

package dev.egressproxy.check;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;

/** The text {@code check image} prints: the steps, the hosts table, and what the pull needs. */
final class ImageReport {

    private ImageReport() {
    }

    static void text(ImageResult r, PrintStream out) {
        out.println("egress-proxy check image " + r.image() + " through " + r.proxy());
        for (ImageResult.Step s : r.steps()) {
            out.println((s.ok() ? "ok    " : "FAIL  ") + s.what() + ": " + s.detail());
        }
        if (!r.hosts().isEmpty()) {
            hostTable(r, out);
        }
        out.println();
        r.needs().forEach(out::println);
        out.println(r.pullWorks() ? "PASS: a pull of " + r.image() + " through " + r.proxy() + " would work"
                : "FAIL: a pull of " + r.image() + " through " + r.proxy() + " would fail");
    }

    /** One row per host the pull reached (none when the proxy itself failed, as for a 407). */
    private static void hostTable(ImageResult r, PrintStream out) {
        List<String[]> rows = new ArrayList<>();
        rows.add(new String[] {"HOST", "ROLES", "PROXY", "ANSWERS", "REQUESTS", "DETAIL"});
        for (ImageResult.HostUse h : r.hosts()) {
            rows.add(new String[] {h.authority(), String.join(",", h.roles()), h.proxy().label(),
                h.statuses().isEmpty() ? "-" : h.statuses().stream().map(String::valueOf).collect(Collectors.joining(" ")),
                String.valueOf(h.requests()), h.detail() == null ? "" : h.detail()});
        }
        int[] width = new int[6];
        for (String[] row : rows) {
            for (int i = 0; i < 5; i++) {
                width[i] = Math.max(width[i], row[i].length());
            }
        }
        out.println();
        for (String[] row : rows) {
            StringBuilder line = new StringBuilder();
            for (int i = 0; i < 6; i++) {
                line.append(i == 5 ? row[i] : row[i] + " ".repeat(width[i] + 2 - row[i].length()));
            }
            out.println(line.toString().stripTrailing());
        }
    }
}

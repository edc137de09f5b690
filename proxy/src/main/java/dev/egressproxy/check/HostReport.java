package dev.egressproxy.check;

import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;

/** The table {@code check hosts} prints: one line per host, then a summary line. */
final class HostReport {

    private static final DateTimeFormatter DATE = DateTimeFormatter.ofPattern("yyyy-MM-dd").withZone(ZoneOffset.UTC);
    private static final String[] HEADER = {"HOST:PORT", "ADDRESSES", "DNS", "CONNECT", "TLS", "VERDICT", "REASON"};

    private HostReport() {
    }

    static void table(List<HostResult> results, Path config, Duration connectTimeout, PrintStream out) {
        out.println("egress-proxy check hosts: " + (config == null ? "shipped defaults" : config) + ", connect timeout "
                + HostCheck.human(connectTimeout));
        List<String[]> rows = new ArrayList<>();
        rows.add(HEADER);
        for (HostResult r : results) {
            rows.add(new String[] {r.destination(), addresses(r), millis(r.dnsMillis(), r.via()), millis(r.connectMillis(), null),
                tls(r), r.verdict().name(), r.reason()});
        }
        int[] width = new int[HEADER.length];
        for (String[] row : rows) {
            for (int i = 0; i < row.length - 1; i++) {
                width[i] = Math.max(width[i], row[i].length());
            }
        }
        for (String[] row : rows) {
            StringBuilder line = new StringBuilder();
            for (int i = 0; i < row.length; i++) {
                line.append(i == row.length - 1 ? row[i] : pad(row[i], width[i] + 2));
            }
            out.println(line.toString().stripTrailing());
        }
        long pass = count(results, HostResult.Verdict.PASS);
        long fail = count(results, HostResult.Verdict.FAIL);
        long skip = count(results, HostResult.Verdict.SKIP);
        out.println(pass + " passed, " + fail + " failed, " + skip + " skipped"
                + (skip > 0 ? " (a SKIP does not fail the check)" : ""));
    }

    private static long count(List<HostResult> results, HostResult.Verdict v) {
        return results.stream().filter(r -> r.verdict() == v).count();
    }

    private static String addresses(HostResult r) {
        if (r.addresses().isEmpty()) {
            return "-";
        }
        String first = r.addresses().get(0);
        return r.addresses().size() == 1 ? first : first + " +" + (r.addresses().size() - 1);
    }

    private static String millis(long ms, String via) {
        if ("connect-to".equals(via)) {
            return "connect-to";
        }
        return ms < 0 ? "-" : ms + "ms";
    }

    private static String tls(HostResult r) {
        HostResult.Tls t = r.tls();
        if (t == null) {
            return "-";
        }
        String cert = t.subject() == null ? "" : " " + shortName(t.subject()) + " until " + DATE.format(t.notAfter());
        return (t.ok() ? "ok" : "failed") + cert;
    }

    /** The CN of a distinguished name, else the whole name. */
    static String shortName(String dn) {
        for (String part : dn.split(",")) {
            if (part.trim().startsWith("CN=")) {
                return part.trim();
            }
        }
        return dn;
    }

    private static String pad(String s, int width) {
        return s.length() >= width ? s : s + " ".repeat(width - s.length());
    }
}

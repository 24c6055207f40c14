// Java's java.net.URI and java.net.URL. stdin: one URL per line, base64 of its UTF-8.
// stdout: one JSON array per line, the [parser, scheme, host] readings.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.URI;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

public class JavaUrl {
  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
    PrintStream out = new PrintStream(System.out, false, "UTF-8");
    String line;
    while ((line = in.readLine()) != null) {
      String text = new String(Base64.getDecoder().decode(line), StandardCharsets.UTF_8);
      StringBuilder json = new StringBuilder("[");
      try {
        URI uri = new URI(text);
        reading(json, "java-uri", uri.getScheme(), uri.getHost());
      } catch (Exception e) {
        // not a URI: it reaches nothing
      }
      try {
        URL url = new URL(text);
        reading(json, "java-url", url.getProtocol(), url.getHost());
      } catch (Exception e) {
        // not a URL (or no handler for its protocol): it reaches nothing
      }
      out.println(json.append("]"));
    }
    out.flush();
  }

  static void reading(StringBuilder json, String parser, String scheme, String host) {
    if (scheme == null && host == null) return;
    if (json.length() > 1) json.append(",");
    json.append("[").append(quote(parser)).append(",").append(quote(scheme == null ? "" : scheme))
        .append(",").append(quote(host == null ? "" : host)).append("]");
  }

  static String quote(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append("\"").toString();
  }
}

// Prints, as JSON, the bean properties the Kubernetes deployer's model classes (fabric8,
// as bundled in Skipper's jar) can bind: Spring's Binder fills only these, so any other
// field of a podTemplate value would be dropped silently. Run by hack/deployer-model.sh.
import java.lang.reflect.*;
import java.util.*;
public class Gen {
  static Map<String, Map<String,String>> out = new TreeMap<>();
  static String type(Type t) {
    if (t instanceof ParameterizedType) {
      ParameterizedType p = (ParameterizedType) t;
      Class<?> raw = (Class<?>) p.getRawType();
      if (List.class.isAssignableFrom(raw)) return "[" + type(p.getActualTypeArguments()[0]) + "]";
      if (Map.class.isAssignableFrom(raw)) return "{" + type(p.getActualTypeArguments()[1]) + "}";
    }
    Class<?> c = (Class<?>) t;
    if (c == String.class || c.isPrimitive() || Number.class.isAssignableFrom(c) || c == Boolean.class) return "scalar";
    String n = c.getSimpleName();
    if (n.equals("Quantity") || n.equals("IntOrString")) return "scalar";
    if (c.getName().startsWith("io.fabric8")) { walk(c); return n; }
    return "?" + c.getName();
  }
  static void walk(Class<?> c) {
    String n = c.getSimpleName();
    if (out.containsKey(n)) return;
    Map<String,String> props = new TreeMap<>();
    out.put(n, props);
    for (Method m : c.getMethods()) {
      if (m.getName().startsWith("set") && m.getParameterCount() == 1 && !m.getName().equals("setAdditionalProperty") && !m.getName().equals("setAdditionalProperties")) {
        String p = m.getName().substring(3);
        p = Character.toLowerCase(p.charAt(0)) + p.substring(1);
        props.put(p, null);
        props.put(p, type(m.getGenericParameterTypes()[0]));
      }
    }
  }
  public static void main(String[] a) throws Exception {
    for (String s : a) walk(Class.forName(s));
    StringBuilder sb = new StringBuilder("{");
    boolean first = true;
    for (var e : out.entrySet()) {
      if (!first) sb.append(",\n"); first = false;
      sb.append("\"").append(e.getKey()).append("\": {");
      boolean f2 = true;
      for (var p : e.getValue().entrySet()) {
        if (!f2) sb.append(", "); f2 = false;
        sb.append("\"").append(p.getKey()).append("\": \"").append(p.getValue()).append("\"");
      }
      sb.append("}");
    }
    System.out.println(sb.append("}"));
  }
}

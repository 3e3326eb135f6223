// The persona's 3D avatar: three.js and the model load only here, on a page
// that shows one. `play(gesture)` plays the clip mapped to that gesture,
// then returns to idle; the playing clip is in
// `document.body.dataset.avatarClip` (and `…avatarGesture`) for tests and
// assistive tooling.
import * as THREE from 'three';
import { GLTFLoader } from './vendor/three/examples/jsm/loaders/GLTFLoader.js';

export async function mountAvatar(container, model, gestures = {}) {
  const renderer = new THREE.WebGLRenderer({ antialias: true, alpha: true, powerPreference: 'low-power' });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  const scene = new THREE.Scene();
  scene.add(new THREE.HemisphereLight(0xffffff, 0x444444, 2.2));
  const sun = new THREE.DirectionalLight(0xffffff, 1.5);
  sun.position.set(1, 2, 3);
  scene.add(sun);
  const camera = new THREE.PerspectiveCamera(35, 1, 0.01, 1000);
  const gltf = await new GLTFLoader().loadAsync(model.url);
  const root = gltf.scene;
  scene.add(root);

  const box = new THREE.Box3().setFromObject(root);
  const size = box.getSize(new THREE.Vector3());
  const center = box.getCenter(new THREE.Vector3());
  const radius = Math.max(size.x, size.y, size.z, 0.001);
  camera.position.set(center.x, center.y + radius * 0.1, center.z + radius * 2.2);
  camera.lookAt(center);
  camera.near = radius / 100;
  camera.far = radius * 100;
  camera.updateProjectionMatrix();

  const canvas = renderer.domElement;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', model.name || 'avatar');
  container.replaceChildren(canvas);

  const mixer = new THREE.AnimationMixer(root);
  const clips = new Map(gltf.animations.map((c) => [c.name, c]));
  let action = null;
  let backTimer = null;
  const still = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;

  function setState(clip, gesture) {
    document.body.dataset.avatarClip = clip || '';
    document.body.dataset.avatarGesture = gesture || '';
    if (clip) {
      const played = (document.body.dataset.avatarPlayed || '').split(' ').filter(Boolean);
      played.push(clip);
      document.body.dataset.avatarPlayed = played.slice(-20).join(' ');
    }
  }

  function playClip(name, gesture, loop = false) {
    clearTimeout(backTimer);
    const clip = name && clips.get(name);
    if (!clip) {
      if (gesture !== 'idle') return playGesture('idle', true);
      if (action) action.fadeOut(0.3);
      action = null;
      setState('', 'idle');
      return;
    }
    const next = mixer.clipAction(clip);
    next.reset();
    next.setLoop(loop ? THREE.LoopRepeat : THREE.LoopOnce, loop ? Infinity : 1);
    next.clampWhenFinished = !loop;
    if (action && action !== next) action.crossFadeTo(next, 0.3, false);
    next.play();
    action = next;
    setState(clip.name, gesture);
    if (!loop) {
      backTimer = setTimeout(() => playGesture('idle', true), Math.max(1000, clip.duration * 1000));
    }
  }

  function playGesture(gesture, loop = false) {
    const g = gesture || 'idle';
    playClip(gestures[g] || null, g, loop || g === 'idle' || g === 'talking' || g === 'thinking');
  }

  let raf = 0;
  const clock = new THREE.Clock();
  const resize = () => {
    const w = container.clientWidth || 240;
    const hgt = container.clientHeight || 240;
    renderer.setSize(w, hgt, false);
    camera.aspect = w / hgt;
    camera.updateProjectionMatrix();
  };
  const observer = new ResizeObserver(resize);
  observer.observe(container);
  resize();
  // At most 30 frames a second: cheap laptops and phones draw on the CPU.
  let last = 0;
  const frame = (now) => {
    raf = requestAnimationFrame(frame);
    if (document.hidden || now - last < 33) return;
    last = now;
    mixer.update(still ? 0 : clock.getDelta());
    renderer.render(scene, camera);
  };
  raf = requestAnimationFrame(frame);
  playGesture('idle', true);

  return {
    play: playGesture,
    playClip: (name, gesture) => playClip(name, gesture, false),
    clips: [...clips.keys()],
    dispose() {
      cancelAnimationFrame(raf);
      clearTimeout(backTimer);
      observer.disconnect();
      mixer.stopAllAction();
      renderer.dispose();
      canvas.remove();
      setState('', '');
    },
  };
}
